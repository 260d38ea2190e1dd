"""Which commits a project needs: buf.lock first; else buf.yaml's refs resolved by the BSR, or,
when the BSR cannot answer, by the label indexes (team registry, then this machine)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bsr_team_cache.bsr.client import BSRModuleClient, ModuleGraph
from bsr_team_cache.domain.buflock import BUF_LOCK, BufLock, LockedDep, read_buf_lock
from bsr_team_cache.domain.bufyaml import BUF_YAML, read_buf_yaml
from bsr_team_cache.domain.moduleref import ModuleName, ModuleRef, is_commit_id
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    InvalidContentError,
    RegistryError,
    UnavailableError,
    UsageError,
)
from bsr_team_cache.oci.artifact import ModuleArtifact, module_repository, pull_module
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.labels import (
    DEFAULT_LABEL,
    LabelRecord,
    read_label_index,
    update_label_index,
)

DEFAULT_LABEL_TTL = 24 * 3600.0


@dataclass
class Resolution:
    lock: BufLock
    source: str  # "buf.lock", "bsr" or "label index"
    warnings: list[str] = field(default_factory=list)
    # Artifacts read while resolving offline, so the fetch need not read them twice.
    artifacts: dict[str, ModuleArtifact] = field(default_factory=dict)
    # commit -> the buf.yaml labels that resolved to it (recorded in published artifacts)
    labels: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TeamContext:
    """Where a team's artifacts live: the registry, the team name, an optional namespace."""

    registry: RegistryBackend
    team: str
    namespace: str = ""

    def repo(self, module: ModuleName) -> str:
        return module_repository(self.team, module, self.namespace)


def resolve_project(
    project: Path,
    *,
    bsr: BSRModuleClient,
    team: TeamContext,
    store: LocalStore | None,
    update_lock: bool,
    label_ttl: float = DEFAULT_LABEL_TTL,
    clock: Callable[[], float] = time.time,
) -> Resolution:
    lock_path = project / BUF_LOCK
    if lock_path.is_file() and not update_lock:
        lock = read_buf_lock(lock_path)
        if lock.version != "v2":
            raise UsageError(
                f"{lock_path}: buf.lock {lock.version} holds b4 digests; run"
                " `buf dep update` (or fetch --update-lock) to write a v2 lock"
            )
        return Resolution(lock, "buf.lock")
    config = read_buf_yaml(project / BUF_YAML)
    if not config.deps:
        return Resolution(BufLock("v2", ()), "buf.yaml")
    return resolve_refs(
        config.deps, bsr=bsr, team=team, store=store, label_ttl=label_ttl, clock=clock
    )


def resolve_refs(
    refs: tuple[ModuleRef, ...] | list[ModuleRef],
    *,
    bsr: BSRModuleClient,
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float = DEFAULT_LABEL_TTL,
    clock: Callable[[], float] = time.time,
) -> Resolution:
    """The closure of ``refs`` as locked deps: by the BSR, else by the label indexes."""
    refs = tuple(refs)
    try:
        graph = bsr.graph(list(refs))
    except UnavailableError as exc:
        return _resolve_offline(refs, team, store, label_ttl, clock, str(exc))
    deps = [LockedDep(c.module, c.commit_id, c.digest) for c in graph.commits.values()]
    resolution = Resolution(BufLock("v2", tuple(sorted(deps, key=lambda d: str(d.module)))), "bsr")
    roots = {graph.commits[c].module: c for c in graph.roots}
    for ref in refs:
        if ref.label and ref.module in roots:
            resolution.labels.setdefault(roots[ref.module], []).append(ref.label)
    _remember_labels(refs, graph, team, store, label_ttl, clock, resolution.warnings)
    return resolution


def _label_of(ref: ModuleRef) -> str:
    return ref.ref if ref.ref is not None else DEFAULT_LABEL


def _remember_labels(
    refs: tuple[ModuleRef, ...],
    graph: ModuleGraph,
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float,
    clock: Callable[[], float],
    warnings: list[str],
) -> None:
    now = clock()
    roots = {graph.commits[c].module: c for c in graph.roots}
    for ref in refs:
        if ref.is_commit or ref.module not in roots:
            continue
        commit = roots[ref.module]
        if store is not None:
            store.remember_label(ref.module, _label_of(ref), commit)
        try:
            update_label_index(
                team.registry,
                team.repo(ref.module),
                {_label_of(ref): LabelRecord(commit, now)},
                refresh_after=label_ttl / 4,
            )
        except (RegistryError, InvalidContentError) as exc:
            warnings.append(f"could not update the team label index for {ref}: {exc}")
            return  # the registry is likely down: do not retry for every module


def _resolve_offline(
    refs: tuple[ModuleRef, ...],
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float,
    clock: Callable[[], float],
    why: str,
) -> Resolution:
    resolution = Resolution(BufLock("v2", ()), "label index")
    now = clock()
    locked: dict[ModuleName, LockedDep] = {}
    problems: list[str] = []
    for ref in refs:
        if ref.is_commit:
            assert ref.ref is not None
            commit = ref.ref
        else:
            unusable: list[str] = []
            record = _newest_label_record(ref, team, store, unusable)
            resolution.warnings.extend(unusable)
            if record is None:
                why = f" ({'; '.join(unusable)})" if unusable else ""
                problems.append(f"{ref}: no label index entry{why}")
                continue
            age = now - record.resolved_at
            if age > label_ttl:
                problems.append(
                    f"{ref}: the label index entry is {age / 3600:.1f} h old (TTL"
                    f" {label_ttl / 3600:.1f} h)"
                )
                continue
            commit = record.commit
            resolution.warnings.append(
                f"{ref} resolved to {commit} from the label index ({age / 60:.0f} min old)"
            )
        unusable = []
        artifact = _artifact(ref.module, commit, team, store, unusable)
        resolution.warnings.extend(unusable)
        if artifact is None:
            why = f" ({'; '.join(unusable)})" if unusable else ""
            problems.append(
                f"{ref.module}:{commit}: not in the local store or the team registry{why}"
            )
            continue
        resolution.artifacts[commit] = artifact
        locked[ref.module] = LockedDep(ref.module, commit, artifact.digest)
        for dep in artifact.deps:
            # A direct dep's own commit wins over a transitive one (as with buf's pins).
            locked.setdefault(dep.module, LockedDep(dep.module, dep.commit, dep.digest))
    if problems:
        raise BSRTeamCacheError(
            f"cannot resolve the deps: the BSR is unavailable ({why}) and "
            + "; ".join(problems)
            + ". Pin the deps in buf.lock (buf dep update, or fetch --update-lock while the"
            " BSR is reachable)"
        )
    resolution.lock = BufLock("v2", tuple(sorted(locked.values(), key=lambda d: str(d.module))))
    resolution.warnings.insert(0, f"the BSR is unavailable ({why}); resolving offline")
    return resolution


def _newest_label_record(
    ref: ModuleRef, team: TeamContext, store: LocalStore | None, warnings: list[str]
) -> LabelRecord | None:
    candidates: list[LabelRecord] = []
    try:
        team_record = read_label_index(team.registry, team.repo(ref.module)).get(_label_of(ref))
        if team_record is not None:
            candidates.append(team_record)
    except (RegistryError, InvalidContentError) as exc:
        warnings.append(f"team label index unusable for {ref.module}: {exc}")
    if store is not None:
        local = store.label(ref.module, _label_of(ref))
        if local is not None and is_commit_id(local[0]):
            candidates.append(LabelRecord(*local))
    return max(candidates, key=lambda r: r.resolved_at, default=None)


def _artifact(
    module: ModuleName,
    commit: str,
    team: TeamContext,
    store: LocalStore | None,
    warnings: list[str],
) -> ModuleArtifact | None:
    if store is not None:
        try:
            found = store.get(module, commit)
        except InvalidContentError as exc:
            warnings.append(str(exc))
            found = None
        if found is not None:
            return found
    try:
        return pull_module(team.registry, team.repo(module), module, commit)
    except InvalidContentError as exc:
        warnings.append(f"team registry: {exc}")
    except RegistryError:
        pass  # said by the caller: not in the local store or the team registry
    return None
