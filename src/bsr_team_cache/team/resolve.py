"""Which commits a project needs: buf.lock first; else buf.yaml's refs resolved by the BSR, or,
when the BSR cannot answer, by the label indexes (team registry, then this machine)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._records import field, record
from bsr_team_cache.domain.buflock import (
    BUF_LOCK,
    BufLock,
    LockedDep,
    lock_from_json,
    lock_to_json,
    parse_buf_lock,
    read_buf_lock,
)
from bsr_team_cache.domain.bufyaml import BUF_YAML, read_buf_yaml
from bsr_team_cache.domain.moduleref import ModuleName, ModuleRef, is_commit_id
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    InvalidContentError,
    RegistryError,
    UnavailableError,
)
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.store import LocalStore
from bsr_team_cache.store.index import lock_memo_key
from bsr_team_cache.team import DEFAULT_LABEL_TTL

if TYPE_CHECKING:
    from bsr_team_cache.bsr.client import BSRModuleClient
    from bsr_team_cache.oci.artifact import ModuleArtifact
    from bsr_team_cache.store.fallible import FallibleStore
    from bsr_team_cache.team.labels import LabelRecord
    from bsr_team_cache.team.trust import DocumentSigner, TrustedConfig


@record
class Resolution:
    lock: BufLock
    source: str  # "buf.lock", "bsr" or "label index"
    warnings: list[str] = field(default_factory=list)
    # Artifacts read while resolving offline, so the fetch need not read them twice.
    artifacts: dict[str, ModuleArtifact] = field(default_factory=dict)
    # commit -> the buf.yaml labels that resolved to it (recorded in published artifacts)
    labels: dict[str, list[str]] = field(default_factory=dict)
    # Why the team registry could not be written while resolving (it is likely down).
    registry_down: str | None = None


@record
class TeamContext:
    """Where a team's artifacts live: the registry, the team name, an optional namespace."""

    registry: RegistryBackend
    team: str
    namespace: str = ""
    member: str = ""  # who writes (a signed team's label indexes: maintainers and admins)
    _private_keys: list | None = field(default=None, repr=False, compare=False)

    def private_keys(self) -> list:
        """This member's keys for the team's encrypted layers, loaded once (none if unset)."""
        if self._private_keys is None:
            self._private_keys = member_private_keys()
        return self._private_keys

    def repo(self, module: ModuleName) -> str:
        from bsr_team_cache.oci.artifact import module_repository

        return module_repository(self.team, module, self.namespace)

    def labels_repo(self, module: ModuleName) -> str:
        from bsr_team_cache.team.labels import label_index_repository

        return label_index_repository(self.team, module, self.namespace)


def member_private_keys() -> list:
    """The private keys named by BSR_TEAM_CACHE_PRIVATE_KEY_FILE / _PRIVATE_KEY; the
    cryptography machinery loads only when one is set."""
    env = os.environ
    if not (env.get("BSR_TEAM_CACHE_PRIVATE_KEY_FILE") or env.get("BSR_TEAM_CACHE_PRIVATE_KEY")):
        return []
    from bsr_team_cache.oci.encryption import private_keys_from_env

    return private_keys_from_env(env)


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
    """The commits a project pins: its buf.lock (v1beta1/v1: b4 digests, v2: b5), else its
    buf.yaml's refs resolved, with digests of the type its buf.yaml version's lock holds."""
    lock_path = project / BUF_LOCK
    if lock_path.is_file() and not update_lock:
        lock = _read_lock(lock_path, store)
        return Resolution(_with_digests(lock, lock_path, bsr), "buf.lock")
    config = read_buf_yaml(project / BUF_YAML)
    version = config.version  # buf writes the lock of its buf.yaml's version
    if not config.deps:
        return Resolution(BufLock(version, ()), "buf.yaml")
    return resolve_refs(
        config.deps,
        bsr=bsr,
        team=team,
        store=store,
        label_ttl=label_ttl,
        clock=clock,
        lock_version=version,
    )


def _read_lock(path: Path, store: LocalStore | FallibleStore | None) -> BufLock:
    """buf.lock, parsed. A lock read before with the same bytes comes from the store's memo of
    the last parse per project: no YAML to load and parse on a warm fetch."""
    if store is None:
        return read_buf_lock(path)
    try:
        data = path.read_bytes()
    except OSError:
        return read_buf_lock(path)  # which says what is wrong
    key = lock_memo_key(path)
    digest = hashlib.sha256(data).hexdigest()
    memo = store.kv_get(key)
    if memo is not None:
        with contextlib.suppress(
            ValueError, TypeError, KeyError, RecursionError, BSRTeamCacheError
        ):
            value = json.loads(memo)
            if value["sha256"] == digest:
                return lock_from_json(value["lock"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return read_buf_lock(path)  # which says what is wrong
    lock = parse_buf_lock(text, path)  # the bytes that were hashed
    store.kv_put(key, json.dumps({"sha256": digest, "lock": lock_to_json(lock)}))
    return lock


def _with_digests(lock: BufLock, path: Path, bsr: BSRModuleClient) -> BufLock:
    """A v1 lock may leave digests out (buf then asks the BSR for them): ask for the b4 ones."""
    missing = [d for d in lock.deps if d.digest is None]
    if not missing:
        return lock
    try:
        found = bsr.resolve([ModuleRef(d.module, d.commit) for d in missing], b4=True)
    except UnavailableError as exc:
        raise BSRTeamCacheError(
            f"{path}: {', '.join(str(d) for d in missing)} have no digest, and the BSR that"
            f" would give them is unavailable ({exc}); run `buf dep update`"
        ) from None
    digests = {c.commit_id: c.digest for c in found}
    return BufLock(
        lock.version,
        tuple(
            d if d.digest is not None else LockedDep(d.module, d.commit, digests.get(d.commit))
            for d in lock.deps
        ),
    )


def resolve_refs(
    refs: tuple[ModuleRef, ...] | list[ModuleRef],
    *,
    bsr: BSRModuleClient,
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float = DEFAULT_LABEL_TTL,
    clock: Callable[[], float] = time.time,
    lock_version: str = "v2",
) -> Resolution:
    """The closure of ``refs`` as locked deps (b4 digests for a v1beta1/v1 lock): by the BSR,
    else by the label indexes. Each (module, label) keeps its own commit: labels are resolved
    one by one with GetCommits, then the graph is asked for by commit, one ref per module."""
    refs = tuple(refs)
    b4 = lock_version != "v2"
    try:
        commits = _commits_of(refs, bsr, b4)
        deps: dict[tuple[ModuleName, str], LockedDep] = {}
        for round_ in _rounds(refs, commits):
            graph = bsr.graph(round_, b4=b4)
            for c in graph.commits.values():
                deps.setdefault((c.module, c.commit_id), LockedDep(c.module, c.commit_id, c.digest))
    except UnavailableError as exc:
        return _resolve_offline(refs, team, store, label_ttl, clock, str(exc), lock_version)
    ordered = sorted(deps.values(), key=lambda d: (str(d.module), d.commit))
    resolution = Resolution(BufLock(lock_version, tuple(ordered)), "bsr")
    for ref, commit in zip(refs, commits, strict=True):
        if ref.label:
            resolution.labels.setdefault(commit, []).append(ref.label)
    resolution.registry_down = _remember_labels(
        refs, commits, team, store, label_ttl, clock, resolution.warnings
    )
    return resolution


def _commits_of(refs: tuple[ModuleRef, ...], bsr: BSRModuleClient, b4: bool) -> list[str]:
    """The commit each ref names: its own if it is one, else what its label (or the default
    label) points at, from GetCommits (which keeps order and allows a module twice)."""
    by_label = [r for r in refs if not r.is_commit]
    resolved = iter(bsr.resolve(by_label, b4=b4) if by_label else [])
    return [r.ref if r.is_commit else next(resolved).commit_id for r in refs]  # type: ignore[misc]


def _rounds(refs: tuple[ModuleRef, ...], commits: list[str]) -> list[list[ModuleRef]]:
    """Graph requests by commit, each naming a module at most once (as the API requires)."""
    rounds: list[dict[ModuleName, ModuleRef]] = []
    for ref, commit in zip(refs, commits, strict=True):
        pinned = ModuleRef(ref.module, commit)
        for round_ in rounds:
            if ref.module not in round_ or round_[ref.module] == pinned:
                round_[ref.module] = pinned
                break
        else:
            rounds.append({ref.module: pinned})
    return [list(r.values()) for r in rounds]


def _label_of(ref: ModuleRef) -> str:
    from bsr_team_cache.team.labels import DEFAULT_LABEL

    return ref.ref if ref.ref is not None else DEFAULT_LABEL


def _remember_labels(
    refs: tuple[ModuleRef, ...],
    commits: list[str],
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float,
    clock: Callable[[], float],
    warnings: list[str],
) -> str | None:
    """Record each label's commit here and in the team's label index (in a signed team, only
    a maintainer's or admin's, signed); why the team registry could not be written, if it
    could not."""
    from bsr_team_cache.team.labels import LabelRecord, labels_context, update_label_index

    now = clock()
    labelled = [
        (ref, commit) for ref, commit in zip(refs, commits, strict=True) if not ref.is_commit
    ]
    for ref, commit in labelled:
        if store is not None:
            store.remember_label(ref.module, _label_of(ref), commit)
    if not labelled:
        return None
    try:
        writes, signer = label_writer(team, store, warnings)
    except RegistryError as exc:
        return str(exc)
    for ref, commit in labelled if writes else []:
        repo = team.labels_repo(ref.module)
        try:
            update_label_index(
                team.registry,
                repo,
                {_label_of(ref): LabelRecord(commit, now)},
                refresh_after=label_ttl / 4,
                signer=signer and signer.at(labels_context(team.team, ref.module)),
            )
        except InvalidContentError as exc:  # a malformed index: the next write replaces it
            warnings.append(f"could not update the team label index for {ref}: {exc}")
        except RegistryError as exc:
            return str(exc)  # the registry is likely down: do not retry for every module
    return None


def label_writer(
    team: TeamContext, store: LocalStore | None, warnings: list[str]
) -> tuple[bool, DocumentSigner | None]:
    """(whether this member writes the team's label indexes, how it signs them). In a signed
    team only maintainers and admins write them, signed with their registered key; a
    maintainer without it is told in ``warnings``. RegistryError if the registry is down."""
    from bsr_team_cache.team.config import role_at_least
    from bsr_team_cache.team.trust import DOCUMENT_SIGNERS, document_signer, read_trusted_config
    from bsr_team_cache.trust.keys import load_signing_key

    trusted = read_trusted_config(team.registry, team.team, team.namespace, store, warnings)
    if not trusted.signed:
        return True, None
    config = trusted.config
    if config is None or not role_at_least(config.role_of(team.member), DOCUMENT_SIGNERS):
        return False, None  # a member's fetch: labels remembered on this machine only
    try:
        key = load_signing_key()
        return True, document_signer(trusted, team.member, key, "team label indexes not updated")
    except BSRTeamCacheError as exc:
        warnings.append(str(exc))
        return False, None


def _trusted_config(
    team: TeamContext, store: LocalStore | None, warnings: list[str]
) -> TrustedConfig | None:
    """The team configuration offline resolution checks label indexes against; None when the
    team registry does not answer (its label indexes cannot be read either)."""
    from bsr_team_cache.team.trust import read_trusted_config

    try:
        return read_trusted_config(team.registry, team.team, team.namespace, store, warnings)
    except RegistryError as exc:
        warnings.append(f"team label indexes not read: the team registry is unavailable ({exc})")
        return None


def _resolve_offline(
    refs: tuple[ModuleRef, ...],
    team: TeamContext,
    store: LocalStore | None,
    label_ttl: float,
    clock: Callable[[], float],
    why: str,
    lock_version: str = "v2",
) -> Resolution:
    resolution = Resolution(BufLock(lock_version, ()), "label index")
    b4 = lock_version != "v2"
    now = clock()
    locked: dict[ModuleName, LockedDep] = {}
    problems: list[str] = []
    trusted = (
        _trusted_config(team, store, resolution.warnings)
        if any(not r.is_commit for r in refs)
        else None
    )
    for ref in refs:
        if ref.is_commit:
            assert ref.ref is not None
            commit = ref.ref
        else:
            unusable: list[str] = []
            record = _newest_label_record(ref, team, trusted, store, unusable)
            resolution.warnings.extend(unusable)
            if record is None:
                detail = f" ({'; '.join(unusable)})" if unusable else ""
                problems.append(f"{ref}: no label index entry{detail}")
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
            detail = f" ({'; '.join(unusable)})" if unusable else ""
            problems.append(
                f"{ref.module}:{commit}: not in the local store or the team registry{detail}"
            )
            continue
        if b4 and not artifact.has_b4:
            problems.append(
                f"{ref.module}:{commit}: the team has it for v2 projects only (no b4 digest)"
            )
            continue
        resolution.artifacts[commit] = artifact
        locked[ref.module] = LockedDep(ref.module, commit, artifact.b4 if b4 else artifact.digest)
        for dep in artifact.deps:
            # A direct dep's own commit wins over a transitive one (as with buf's pins).
            digest = dep.b4 if b4 else dep.digest
            locked.setdefault(dep.module, LockedDep(dep.module, dep.commit, digest))
    if problems:
        raise BSRTeamCacheError(
            f"cannot resolve the deps: the BSR is unavailable ({why}) and "
            + "; ".join(problems)
            + ". Pin the deps in buf.lock (buf dep update, or fetch --update-lock while the"
            " BSR is reachable)"
        )
    resolution.lock = BufLock(
        lock_version, tuple(sorted(locked.values(), key=lambda d: str(d.module)))
    )
    resolution.warnings.insert(0, f"the BSR is unavailable ({why}); resolving offline")
    return resolution


def _newest_label_record(
    ref: ModuleRef,
    team: TeamContext,
    trusted: TrustedConfig | None,
    store: LocalStore | None,
    warnings: list[str],
) -> LabelRecord | None:
    """The newest record of the ref's label: the team's verified index (``trusted`` None: the
    registry is down) or this machine's."""
    from bsr_team_cache.team.labels import LabelRecord, read_trusted_label_index

    candidates: list[LabelRecord] = []
    try:
        if trusted is not None:
            index = read_trusted_label_index(
                team.registry, team.team, ref.module, team.namespace, trusted, warnings
            )
            team_record = index.get(_label_of(ref))
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
    from bsr_team_cache.oci.artifact import pull_module

    try:
        return pull_module(
            team.registry, team.repo(module), module, commit, private_keys=team.private_keys()
        )
    except InvalidContentError as exc:
        warnings.append(f"team registry: {exc}")
    except RegistryError:
        pass  # said by the caller: not in the local store or the team registry
    return None
