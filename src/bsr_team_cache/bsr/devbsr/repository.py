"""The module data a dev BSR serves: ``DATA/<owner>/<module>/<label>/`` trees.

Each label directory holds one commit's files. An optional ``buf.yaml`` in it lists the
module's deps (``[registry/]owner/module[:label]``, always on this same server). Commit ids are
derived from (owner, module, b5 digest), so the same content under two labels is one commit and
ids are stable across restarts. Dependencies are pruned to those the module's imports actually
reach, as buf does, so the digests we serve equal the ones buf computes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bsr_team_cache.domain.bufyaml import read_buf_yaml
from bsr_team_cache.domain.digest import (
    Digest,
    b4_from_file_digests,
    b5_from_file_digests,
    hash_files,
    module_file_paths,
)
from bsr_team_cache.errors import ConfigError

DEFAULT_LABEL = "main"
_IMPORT_RE = re.compile(rb'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def stable_id(*parts: str) -> str:
    """A dashless, version-4-shaped UUID derived from ``parts`` (buf parses ids as UUIDs)."""
    raw = bytearray(hashlib.sha256("\x00".join(parts).encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


@dataclass
class DevCommit:
    owner: str
    module: str
    labels: list[str]
    directory: Path
    files: dict[str, str]
    declared_deps: list[tuple[str, str, str | None]]  # (owner, module, label)
    commit_id: str = ""
    digest: Digest | None = None
    deps: list[DevCommit] = field(default_factory=list)  # direct deps, after pruning
    create_time: datetime = _EPOCH
    # A module pushed from a v1 workspace keeps its v1 buf.yaml/buf.lock; the BSR serves them
    # for b4 (they are part of the b4 digest). Modules of v2 workspaces have none.
    v1_files: dict[str, bytes] = field(default_factory=dict)
    b4: Digest | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.module)


@dataclass
class DevModule:
    owner: str
    name: str
    module_id: str
    owner_id: str
    labels: dict[str, DevCommit]
    default_label: str

    def commits(self) -> list[DevCommit]:
        unique: dict[int, DevCommit] = {}
        for commit in self.labels.values():
            unique[id(commit)] = commit
        return list(unique.values())


class ModuleRepository:
    """Loads a data directory and answers lookups by name, label, and commit id."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise ConfigError(
                self.data_dir,
                "data directory not found",
                hint="expected DIR/<owner>/<module>/<label>/",
            )
        self.modules: dict[tuple[str, str], DevModule] = {}
        self.commits: dict[str, DevCommit] = {}
        self.owner_ids: dict[str, str] = {}
        self._load()

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        label_dirs: dict[tuple[str, str], dict[str, DevCommit]] = {}
        for owner_dir in sorted(p for p in self.data_dir.iterdir() if p.is_dir()):
            for module_dir in sorted(p for p in owner_dir.iterdir() if p.is_dir()):
                labels: dict[str, DevCommit] = {}
                for label_dir in sorted(p for p in module_dir.iterdir() if p.is_dir()):
                    labels[label_dir.name] = self._load_label(
                        owner_dir.name, module_dir.name, label_dir
                    )
                if labels:
                    label_dirs[(owner_dir.name, module_dir.name)] = labels
        for (owner, name), labels in label_dirs.items():
            default = DEFAULT_LABEL if DEFAULT_LABEL in labels else sorted(labels)[-1]
            self.owner_ids.setdefault(owner, stable_id("owner", owner))
            self.modules[(owner, name)] = DevModule(
                owner=owner,
                name=name,
                module_id=stable_id("module", owner, name),
                owner_id=self.owner_ids[owner],
                labels=labels,
                default_label=default,
            )
        for module in self.modules.values():
            for commit in module.labels.values():
                self._finish(commit, [])
        # Merge label directories with identical content into one commit.
        for module in self.modules.values():
            by_id: dict[str, DevCommit] = {}
            for label, commit in list(module.labels.items()):
                if commit.commit_id in by_id:
                    by_id[commit.commit_id].labels.append(label)
                    module.labels[label] = by_id[commit.commit_id]
                else:
                    by_id[commit.commit_id] = commit
            for commit in by_id.values():
                self.commits[commit.commit_id] = commit

    def _load_label(self, owner: str, module: str, label_dir: Path) -> DevCommit:
        declared: list[tuple[str, str, str | None]] = []
        v1_files: dict[str, bytes] = {}
        if (label_dir / "buf.yaml").is_file():
            config = read_buf_yaml(label_dir / "buf.yaml")
            for ref in config.deps:
                declared.append((ref.module.owner, ref.module.name, ref.ref))
            if config.version in ("v1beta1", "v1"):
                for name in ("buf.yaml", "buf.lock"):
                    if (label_dir / name).is_file():
                        v1_files[name] = (label_dir / name).read_bytes()
        return DevCommit(
            owner=owner,
            module=module,
            labels=[label_dir.name],
            directory=label_dir,
            files=module_file_paths(label_dir),
            declared_deps=declared,
            v1_files=v1_files,
        )

    def _finish(self, commit: DevCommit, stack: list[tuple[str, str]]) -> None:
        if commit.digest is not None:
            return
        if commit.key in stack:
            cycle = " -> ".join("/".join(k) for k in [*stack, commit.key])
            raise ConfigError(commit.directory / "buf.yaml", f"dependency cycle: {cycle}")
        candidates: list[DevCommit] = []
        for owner, name, label in commit.declared_deps:
            dep = self._declared(commit, owner, name, label)
            self._finish(dep, [*stack, commit.key])
            candidates.append(dep)
        commit.deps = _prune_by_imports(commit, candidates)
        transitive = transitive_deps(commit)
        file_digests = hash_files(commit.files)
        commit.digest = b5_from_file_digests(
            file_digests, [d.digest for d in transitive if d.digest]
        )
        commit.b4 = b4_from_file_digests(file_digests, commit.v1_files)
        commit.commit_id = stable_id("commit", commit.owner, commit.module, str(commit.digest))
        offset = int(commit.commit_id[:6], 16) % (365 * 24 * 3600)
        commit.create_time = _EPOCH + timedelta(seconds=offset)

    def _declared(self, commit: DevCommit, owner: str, name: str, label: str | None) -> DevCommit:
        module = self.modules.get((owner, name))
        where = commit.directory / "buf.yaml"
        if module is None:
            raise ConfigError(where, f"dependency {owner}/{name} is not in {self.data_dir}")
        wanted = label or module.default_label
        if wanted not in module.labels:
            raise ConfigError(where, f"dependency {owner}/{name} has no label {wanted!r}")
        return module.labels[wanted]

    # -- lookups ---------------------------------------------------------------------------
    def module(self, owner: str, name: str) -> DevModule | None:
        return self.modules.get((owner, name))

    def module_by_id(self, module_id: str) -> DevModule | None:
        for module in self.modules.values():
            if module.module_id == module_id:
                return module
        return None

    def owner_name(self, owner_id: str) -> str | None:
        for name, oid in self.owner_ids.items():
            if oid == owner_id:
                return name
        return None

    def resolve(self, owner: str, name: str, ref: str | None) -> DevCommit | None:
        """A label name, a commit id of this module, or None for the default label."""
        module = self.module(owner, name)
        if module is None:
            return None
        if not ref:
            return module.labels[module.default_label]
        commit = self.commits.get(ref.replace("-", "").lower())
        if commit is not None and commit.key == (owner, name):
            return commit
        return module.labels.get(ref)


def transitive_deps(commit: DevCommit) -> list[DevCommit]:
    """Every commit ``commit`` depends on, directly or not (deps are finished before use)."""
    seen: dict[int, DevCommit] = {}
    stack = list(commit.deps)
    while stack:
        dep = stack.pop()
        if id(dep) not in seen:
            seen[id(dep)] = dep
            stack.extend(dep.deps)
    return list(seen.values())


def _imports(path: str) -> list[str]:
    return [m.decode() for m in _IMPORT_RE.findall(Path(path).read_bytes())]


def _prune_by_imports(commit: DevCommit, candidates: list[DevCommit]) -> list[DevCommit]:
    """The direct deps buf would find: modules that provide a file this module imports.

    buf (bufmodule getModuleDeps) scans each .proto file's imports and maps every import to the
    module of the workspace that holds it; imports nobody holds are well-known types. The
    candidates are the declared deps and everything they depend on.
    """
    pool: list[DevCommit] = []
    stack = list(candidates)
    while stack:
        dep = stack.pop(0)
        if not any(dep is p for p in pool):
            pool.append(dep)
            stack.extend(dep.deps)
    used: list[DevCommit] = []
    for rel, path in sorted(commit.files.items()):
        if not rel.endswith(".proto"):
            continue
        for imported in _imports(path):
            if imported in commit.files:
                continue
            for dep in pool:
                if imported in dep.files:
                    if not any(dep is u for u in used):
                        used.append(dep)
                    break
    return used
