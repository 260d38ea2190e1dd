"""Keeping the team registry's size in check: what machines add for speed and no one removes."""
