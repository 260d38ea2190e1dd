"""bsr-team-cache: a team-shared cache of Buf Schema Registry modules, kept in an OCI registry."""

import sys as _sys
import types as _types

__version__ = "0.1.0"

# httpx imports its own command-line client (click, rich, pygments: ~100 ms of every start-up)
# whenever those happen to be installed; nothing here runs it. An empty stand-in makes httpx
# fall back to its stub, as it does when they are absent. Only if httpx is not loaded yet.
if "httpx" not in _sys.modules:
    _sys.modules.setdefault("httpx._main", _types.ModuleType("httpx._main"))
