"""The buf domain: module references, buf.yaml/buf.lock, digests. Pure; no network."""

from bsr_team_cache.domain.buflock import BufLock, LockedDep, read_buf_lock, write_buf_lock
from bsr_team_cache.domain.bufyaml import BufYaml, read_buf_yaml
from bsr_team_cache.domain.digest import Digest, b4_digest, b5_digest, parse_digest
from bsr_team_cache.domain.moduleref import (
    ModuleName,
    ModuleRef,
    parse_module_name,
    parse_module_ref,
)

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
