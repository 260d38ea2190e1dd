"""bsr-team-cache: a team-shared cache of Buf Schema Registry modules, kept in an OCI registry."""

__version__ = "0.1.0"
