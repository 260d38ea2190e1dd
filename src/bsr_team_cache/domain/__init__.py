"""The buf domain: module references, buf.yaml/buf.lock, digests. Pure; no network."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bsr_team_cache.domain.buflock import BufLock, LockedDep, read_buf_lock, write_buf_lock
    from bsr_team_cache.domain.bufyaml import BufYaml, read_buf_yaml
    from bsr_team_cache.domain.digest import Digest, b4_digest, b5_digest, parse_digest
    from bsr_team_cache.domain.moduleref import (
        ModuleName,
        ModuleRef,
        parse_module_name,
        parse_module_ref,
    )

# Name -> submodule, imported on first use: importing one submodule (digest, say) imports this
# package first, and must not pay for the others (buf.lock's reader brings in YAML).
_EXPORTS = {
    "BufLock": "buflock",
    "LockedDep": "buflock",
    "read_buf_lock": "buflock",
    "write_buf_lock": "buflock",
    "BufYaml": "bufyaml",
    "read_buf_yaml": "bufyaml",
    "Digest": "digest",
    "b4_digest": "digest",
    "b5_digest": "digest",
    "parse_digest": "digest",
    "ModuleName": "moduleref",
    "ModuleRef": "moduleref",
    "parse_module_name": "moduleref",
    "parse_module_ref": "moduleref",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BufLock",
    "BufYaml",
    "Digest",
    "LockedDep",
    "ModuleName",
    "ModuleRef",
    "b4_digest",
    "b5_digest",
    "parse_digest",
    "parse_module_name",
    "parse_module_ref",
    "read_buf_lock",
    "read_buf_yaml",
    "write_buf_lock",
]
