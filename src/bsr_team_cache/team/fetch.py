"""The fetch path: team registry -> BSR, publish misses, fill buf's cache, export for protoc."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bufcache.v3 import write_export, write_module
from bsr_team_cache.domain.buflock import (
    BUF_LOCK,
    BufLock,
    LockedDep,
    read_buf_lock,
    write_buf_lock,
)
from bsr_team_cache.domain.bufyaml import BUF_YAML, read_buf_yaml
from bsr_team_cache.domain.moduleref import parse_module_ref
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    DigestMismatchError,
    RegistryError,
    UnavailableError,
    UsageError,
)
from bsr_team_cache.oci.artifact import (
    ModuleArtifact,
    ModuleDepRecord,
    module_repository,
    pull_module,
    push_module,
)
from bsr_team_cache.oci.base import RegistryBackend

TEAM, BSR = "team", "bsr"


@dataclass
class ModuleResult:
    name: str
    commit: str
    tier: str
    bytes: int
    seconds: float
    published: bool = False


@dataclass
class FetchReport:
    modules: list[ModuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, tier: str) -> int:
        return sum(1 for m in self.modules if m.tier == tier)

    def to_json(self) -> dict:
        return {
            "modules": [m.__dict__ for m in self.modules],
            "hits": {TEAM: self.count(TEAM), BSR: self.count(BSR)},
            "bytes": sum(m.bytes for m in self.modules),
            "seconds": round(self.seconds, 4),
            "warnings": self.warnings,
        }


def _lock_for(project: Path, bsr: BSRModuleClient, update_lock: bool) -> BufLock:
    lock_path = project / BUF_LOCK
    if lock_path.is_file() and not update_lock:
        lock = read_buf_lock(lock_path)
        if lock.version != "v2":
            raise UsageError(
                f"{lock_path}: buf.lock {lock.version} holds b4 digests; run"
                " `buf dep update` (or fetch --update-lock) to write a v2 lock"
            )
        return lock
    config = read_buf_yaml(project / BUF_YAML)
    graph = bsr.graph(list(config.deps)) if config.deps else None
    deps = (
        []
        if graph is None
        else [LockedDep(c.module, c.commit_id, c.digest) for c in graph.commits.values()]
    )
    lock = BufLock("v2", tuple(sorted(deps, key=lambda d: str(d.module))))
    if update_lock:  # never rewrite a user's buf.lock unasked
        write_buf_lock(lock_path, lock)
    return lock


def fetch(
    project: Path,
    *,
    team: str,
    registry: RegistryBackend,
    bsr: BSRModuleClient,
    buf_cache: Path | None,
    export: Path | None = None,
    update_lock: bool = False,
    namespace: str = "",
) -> FetchReport:
    started = time.perf_counter()
    report = FetchReport()
    if not (project / BUF_YAML).is_file():
        raise UsageError(f"{project / BUF_YAML}: file not found (is {project} a buf project?)")
    lock = _lock_for(project, bsr, update_lock)
    artifacts: dict[str, ModuleArtifact] = {}
    misses: list[LockedDep] = []
    registry_down: str | None = None
    for dep in lock.deps:
        t0 = time.perf_counter()
        repo = module_repository(team, dep.module, namespace)
        try:
            artifact = None if registry_down else pull_module(registry, repo, dep.commit)
        except DigestMismatchError as exc:
            report.warnings.append(f"team registry: {exc}; refetching from the BSR")
            artifact = None
        except RegistryError as exc:
            registry_down = str(exc)
            report.warnings.append(f"team registry unavailable ({exc}); falling back to the BSR")
            artifact = None
        if artifact is not None and artifact.digest != dep.digest:
            report.warnings.append(
                f"team registry: {dep} has digest {artifact.digest}, buf.lock"
                f" says {dep.digest}; refetching from the BSR"
            )
            artifact = None
        if artifact is None:
            misses.append(dep)
            continue
        artifacts[dep.commit] = artifact
        report.modules.append(
            ModuleResult(str(dep.module), dep.commit, TEAM, artifact.size, time.perf_counter() - t0)
        )
    if misses:
        _fetch_from_bsr(misses, bsr, registry, team, namespace, registry_down, artifacts, report)
    for dep in lock.deps:
        artifact = artifacts[dep.commit]
        if buf_cache is not None:
            write_module(
                buf_cache,
                artifact.module,
                artifact.commit,
                artifact.files,
                [(d.module, d.commit, d.digest) for d in artifact.deps],
            )
        if export is not None:
            write_export(export, artifact.files)
    report.seconds = time.perf_counter() - started
    return report


def _fetch_from_bsr(
    misses: list[LockedDep],
    bsr: BSRModuleClient,
    registry: RegistryBackend,
    team: str,
    namespace: str,
    registry_down: str | None,
    artifacts: dict[str, ModuleArtifact],
    report: FetchReport,
) -> None:
    t0 = time.perf_counter()
    refs = [parse_module_ref(f"{d.module}:{d.commit}") for d in misses]
    try:
        graph = bsr.graph(refs)
        contents = bsr.download([graph.commits[d.commit] for d in misses])
    except UnavailableError as exc:
        names = ", ".join(str(d) for d in misses)
        raise BSRTeamCacheError(
            f"cannot fetch {names}: not in the team registry"
            f"{' (unreachable: ' + registry_down + ')' if registry_down else ''} and the BSR is"
            f" unavailable ({exc})"
        ) from None
    elapsed = (time.perf_counter() - t0) / max(1, len(misses))
    for dep, content in zip(misses, contents, strict=True):
        deps = tuple(
            ModuleDepRecord(c.module, c.commit_id, c.digest)
            for c in graph.transitive_deps(dep.commit)
        )
        artifact = ModuleArtifact(
            dep.module,
            dep.commit,
            content.commit.digest,
            deps,
            content.files,
            content.commit.create_time.isoformat(),
        )
        artifact.verify()
        if artifact.digest != dep.digest:
            raise DigestMismatchError(
                f"{dep}: the BSR serves digest {artifact.digest}, buf.lock says {dep.digest}"
            )
        published = False
        if registry_down is None:
            try:
                push_module(registry, module_repository(team, dep.module, namespace), artifact)
                published = True
            except RegistryError as exc:
                report.warnings.append(f"could not publish {dep} to the team registry: {exc}")
        artifacts[dep.commit] = artifact
        report.modules.append(
            ModuleResult(str(dep.module), dep.commit, BSR, artifact.size, elapsed, published)
        )
