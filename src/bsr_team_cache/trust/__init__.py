"""Signed team documents: members' signing keys, signatures, and which signatures are trusted."""
