"""The fetch path: local store -> team registry -> BSR; publish BSR downloads to the team;
fill buf's cache; export an include tree for protoc.

Concurrency: entries in use are held with shared locks (eviction skips them); misses are
filled under per-commit exclusive locks, re-checking the local store once the lock is held,
so N processes missing the same commit make exactly one upstream download.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bsr_team_cache._deadline import deadline_passed, deadline_scope
from bsr_team_cache._records import field, record, replace
from bsr_team_cache.bufcache.v3 import entry_complete, write_module
from bsr_team_cache.domain.buflock import (
    BUF_LOCK,
    BufLock,
    LockedDep,
    read_buf_lock,
    write_buf_lock,
)
from bsr_team_cache.domain.bufyaml import BUF_YAML
from bsr_team_cache.domain.digest import B5, SHAKE256, Digest
from bsr_team_cache.domain.moduleref import ModuleRef
from bsr_team_cache.errors import (
    AccessDeniedError,
    BSRError,
    BSRTeamCacheError,
    ConfigError,
    DigestMismatchError,
    InvalidContentError,
    KeyUnavailableError,
    RegistryError,
    UnavailableError,
    UsageError,
)
from bsr_team_cache.limits import limits
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.store import LocalStore
from bsr_team_cache.store.fallible import FallibleStore
from bsr_team_cache.team.names import validate_team_name
from bsr_team_cache.team.pack_read import PACK_MIN_MODULES, PackRead, pack_worth_reading
from bsr_team_cache.team.resolve import DEFAULT_LABEL_TTL, TeamContext, resolve_project
from bsr_team_cache.usage.events import BSR, LOCAL, TEAM
from bsr_team_cache.usage.record import FETCH_TIERS, ModuleResult

# What only a fetch that reaches the team registry needs (bundles, packs, the team
# configuration, worker threads) is imported there: a warm fetch does not load it.
if TYPE_CHECKING:
    from bsr_team_cache._threads import ContextThreadPool
    from bsr_team_cache.bsr.client import BSRModuleClient
    from bsr_team_cache.bufcache.placer import Placer
    from bsr_team_cache.oci.artifact import ModuleArtifact, StreamedModule
    from bsr_team_cache.team.config import TeamConfig
    from bsr_team_cache.team.packs import Pack

T = TypeVar("T")
TIERS = FETCH_TIERS
# Misses are filled in batches, each under its commits' fill locks: open files stay bounded
# however many deps a project has.
FILL_BATCH = 128
# From this many deps on, the team registry tier asks whether a bundle covers them before
# pulling modules one by one (see _from_registry).
DECIDE_FIRST_DEPS = 32


def _held(work: Callable[[LockedDep], T], dep: LockedDep) -> T:
    """``work`` for one module, a large layer it reads whole keeping its slot until the module
    is stored and placed (oci/layer.py: a bound on such layers in memory at once)."""
    from bsr_team_cache.oci.layer import holding_large_layers

    with holding_large_layers():
        return work(dep)


def _pool(workers: int) -> ContextThreadPool:
    from bsr_team_cache._threads import ContextThreadPool

    return ContextThreadPool(max_workers=workers)


# Modules in memory whose files layers (compressed, as they arrived) are all smaller than this
# are checked and written by the caller's thread. Their work is mostly the interpreter's (some
# small files each), so a second thread only adds handovers of the GIL at every system call: a
# lock pack of 200 modules of ~400 B of layer each took 0.85x as long on the caller's thread as
# with 2 workers on two cores, one of 10 modules (9 under 1 KB, one of 81 KB) 0.96x. (Where
# creating a file takes ~0.5 ms, on ext4 without a journal right after thousands were deleted,
# the workers' overlap won instead: 1.14x.) A module of megabytes spends its time inflating and
# hashing, which run without the GIL: with one among them, they keep a worker per core.
_IN_CALLER_MODULE_BYTES = 1 << 20


class _InCaller:
    """``map`` on the caller's thread: one call after the other, each as its result is taken
    (a pool starts them all at once); the first that raises ends it."""

    def __enter__(self) -> _InCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        return map(fn, items)


def _cpu_pool(run: _Run, layer_sizes: Sequence[int]) -> ContextThreadPool | _InCaller:
    """What checks, stores and places modules already in memory, whose files layers have
    ``layer_sizes`` bytes: the caller's thread when all are small (_IN_CALLER_MODULE_BYTES),
    else workers up to one per core, as more only contend for the interpreter (16 workers took
    1.1-1.25x as long as 2 on two cores)."""
    if len(layer_sizes) < 2 or max(layer_sizes) < _IN_CALLER_MODULE_BYTES:
        return _InCaller()
    from bsr_team_cache._cpus import usable_cpus

    return _pool(max(1, min(run.parallel, len(layer_sizes), usable_cpus())))


@record
class FetchReport:
    modules: list[ModuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resolved_by: str = "buf.lock"
    seconds: float = 0.0
    bundles: list[str] = field(default_factory=list)
    # Why the team registry was found unusable (then said once in ``warnings``), if it was.
    registry_down: str | None = None
    # The lock pack (team/packs.py) looked for: its tag, whether it served, whether this
    # fetch published it.
    pack: str = ""
    pack_used: bool = False
    pack_published: bool = False

    def count(self, tier: str) -> int:
        return sum(1 for m in self.modules if m.tier == tier)

    def bytes(self, tier: str | None = None) -> int:
        return sum(m.bytes for m in self.modules if tier is None or m.tier == tier)

    def to_json(self) -> dict:
        return {
            "modules": [m._asdict() for m in self.modules],
            "hits": {tier: self.count(tier) for tier in TIERS},
            "bytes": {tier: self.bytes(tier) for tier in TIERS},
            "resolved_by": self.resolved_by,
            "bundles": self.bundles,
            "pack": (
                {"tag": self.pack, "used": self.pack_used, "published": self.pack_published}
                if self.pack
                else None
            ),
            "seconds": round(self.seconds, 4),
            "warnings": self.warnings,
        }


@record
class _Run:
    """State of one fetch: what was found so far, and where to report it."""

    team: TeamContext
    store: FallibleStore | None
    report: FetchReport
    on_module: Callable[[ModuleResult, int, int], None] | None
    parallel: int
    total: int = 0
    artifacts: dict[str, ModuleArtifact] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    use_bundles: bool = True
    bundle: str | None = None
    bundle_problem: str | None = None  # said only if the registry itself is not down
    pinned: dict[str, LockedDep] = field(default_factory=dict)  # by module name
    buf_cache: Path | None = None  # buf's cache, filled as each artifact comes in
    need_files: bool = True  # else artifacts are dropped once stored and placed (memory)
    # Commits the registry holds encrypted for others: not overwritten by this member's copy.
    keyless: set[str] = field(default_factory=set)
    pack: Pack | None = None  # the lock's pack, read and checked for shape
    # Looked for, and the team has none (or an unusable one): this fetch may make it.
    pack_missing: bool = False
    pack_read: PackRead | None = None  # the pack's read, started before this module loaded
    whole_lock: bool = False  # the deps are a buf.lock's: every dep record must be pinned
    config: tuple[TeamConfig | None] | None = None  # the team configuration, once read
    placer: Placer | None = None  # a process writing buf's cache entries (bufcache/placer.py)

    def place(self, dep: LockedDep, artifact: ModuleArtifact | StreamedModule) -> None:
        """buf's cache entry for ``dep``, written as soon as its artifact is in and checked
        (from the worker that pulled it: writing overlaps the other transfers; a streamed
        module's entry is staged already and only renamed into place), or handed to the
        placing process when there is one (``_placing``)."""
        if self.buf_cache is not None:
            write_cache_entry(self.buf_cache, dep, artifact, self.placer)

    def found(
        self,
        dep: LockedDep,
        artifact: ModuleArtifact | None,
        tier: str,
        t0: float,
        bundle: str = "",
        size: int | None = None,
    ) -> None:
        """A dep obtained (``artifact`` None: stored and placed, its files not kept)."""
        if self.need_files and artifact is not None:
            self.artifacts[dep.commit] = artifact
        if size is None:
            assert artifact is not None
            size = artifact.size
        self.add(
            ModuleResult(
                str(dep.module),
                dep.commit,
                tier,
                size,
                time.time() - t0,
                bundle=bundle,
                digest=str(dep.digest),
            )
        )

    def add(self, result: ModuleResult) -> None:
        self.report.modules.append(result)
        if self.on_module is not None:
            self.on_module(result, len(self.report.modules), self.total)

    @property
    def registry_down(self) -> str | None:
        return self.report.registry_down

    def mark_registry_down(self, problem: str) -> None:
        """The team registry is unusable: said once, and the BSR serves the rest."""
        if self.report.registry_down is None:
            self.report.registry_down = problem
            where = problem.removeprefix("team registry ")
            self.report.warnings.append(
                f"team registry unavailable ({where}); falling back to the BSR"
            )

    def keep(self, artifact: ModuleArtifact | StreamedModule) -> None:
        if self.store is None:
            return
        from bsr_team_cache.oci.artifact import StreamedModule

        if isinstance(artifact, StreamedModule):  # its layer waits in the store's tmp/
            self.store.adopt(artifact)
        else:  # a full disk: a warning, and the fetch goes on
            self.store.put(artifact)


def fallible(store: LocalStore | FallibleStore | None, report: FetchReport) -> FallibleStore | None:
    """The store as the fetch path uses it: its failures become warnings in ``report``."""
    if store is None or isinstance(store, FallibleStore):
        return store
    return FallibleStore(store, report.warnings)


def fetch(
    project: Path,
    *,
    team: str,
    registry: RegistryBackend,
    bsr: BSRModuleClient,
    buf_cache: Path | None,
    store: LocalStore | None = None,
    export: Path | None = None,
    update_lock: bool = False,
    namespace: str = "",
    label_ttl: float = DEFAULT_LABEL_TTL,
    on_module: Callable[[ModuleResult, int, int], None] | None = None,
    parallel: int = 16,
    report: FetchReport | None = None,
    use_bundles: bool = True,
    bundle: str | None = None,
    timeout: float | None = None,
    member: str = "",
    packs: bool = True,
    pack_read: PackRead | None = None,
) -> FetchReport:
    """Fetch a project's deps within ``timeout`` seconds (default: the command limit). Pass
    ``report`` to keep its warnings if the fetch fails. ``packs``: read the lock's pack, and
    make it when due (team/packs.py); ``use_bundles`` False turns packs off too. ``pack_read``:
    that pack's read, started early (team/pack_read.py), taken if it is the one wanted."""
    started = time.time()
    if not (project / BUF_YAML).is_file():
        raise UsageError(f"{project / BUF_YAML}: file not found (is {project} a buf project?)")
    context = TeamContext(registry, validate_team_name(team), namespace, member)
    report = report if report is not None else FetchReport()
    local = fallible(store, report)
    seconds = limits().command_seconds if timeout is None else timeout
    with deadline_scope(seconds):
        try:
            artifacts, lock = _resolve_and_obtain(
                project,
                context,
                bsr,
                local,
                report,
                buf_cache=buf_cache,
                need_files=export is not None,
                update_lock=update_lock,
                label_ttl=label_ttl,
                on_module=on_module,
                parallel=parallel,
                use_bundles=use_bundles,
                bundle=bundle,
                packs=packs,
                pack_read=pack_read,
            )
        except BSRTeamCacheError as exc:
            record_fetch(local, report, started, team=context.team, member=member, failed=exc)
            if deadline_passed():
                raise BSRTeamCacheError(
                    f"the fetch did not finish within {seconds:g} s (--timeout): {exc}"
                ) from None
            raise
        finally:
            report.warnings.extend(f"BSR: {w}" for w in bsr.server_warnings())
    if export is not None:
        from bsr_team_cache.bufcache.export import Exporter  # only for --export

        exporter = Exporter(export)
        try:
            for dep in lock.deps:
                artifact = artifacts[dep.commit]
                exporter.add(artifact.files, f"{artifact.module}:{artifact.commit}")
        finally:
            exporter.close()
    report.seconds = time.time() - started
    record_fetch(
        local, report, started, team=context.team, member=member, project=str(project.resolve())
    )
    return report


def write_cache_entry(
    buf_cache: Path,
    dep: LockedDep,
    artifact: ModuleArtifact | StreamedModule,
    placer: Placer | None = None,
) -> bool:
    """buf's cache entry of the digest type the lock pins: b5, or b4 with the deps' b4 digests
    and the module's own v1 buf.yaml/buf.lock; False if a complete one was there. A streamed
    module's entry was staged in ``buf_cache`` as its layer arrived (team/stream_sinks.py): it
    is only made visible. Any other is handed to ``placer``'s process if given (True)."""
    from bsr_team_cache.oci.artifact import StreamedModule

    b4 = dep.pins_b4
    deps = [(d.module, d.commit, d.b4 if b4 else d.digest) for d in artifact.deps]
    v1_files = artifact.v1_files if b4 else None
    if isinstance(artifact, StreamedModule):
        return artifact.place(deps, v1_files)
    write = write_module if placer is None else placer.place
    return write(
        buf_cache,
        artifact.module,
        artifact.commit,
        artifact.files,
        deps,
        digest_type=SHAKE256 if b4 else B5,
        v1_files=v1_files,
    )


def _resolve_and_obtain(
    project: Path,
    context: TeamContext,
    bsr: BSRModuleClient,
    store: FallibleStore | None,
    report: FetchReport,
    *,
    buf_cache: Path | None,
    need_files: bool,
    update_lock: bool,
    label_ttl: float,
    on_module: Callable[[ModuleResult, int, int], None] | None,
    parallel: int,
    use_bundles: bool,
    bundle: str | None,
    packs: bool,
    pack_read: PackRead | None = None,
):
    resolution = resolve_project(
        project,
        bsr=bsr,
        team=context,
        store=store,
        update_lock=update_lock,
        label_ttl=label_ttl,
    )
    report.resolved_by = resolution.source
    report.warnings.extend(resolution.warnings)
    lock = resolution.lock
    if resolution.source != "buf.lock" and lock.deps and not update_lock:
        report.warnings.append(
            f"{project / BUF_LOCK} is missing: buf will not use what this fetch wrote (it"
            " resolves buf.yaml's deps itself, from the BSR); pass --update-lock to write buf.lock"
        )
    if update_lock:  # never rewrite a user's buf.lock unasked
        write_buf_lock(project / BUF_LOCK, replace(lock, extra=_kept_sections(project, lock)))
    artifacts = obtain(
        list(lock.deps),
        team=context,
        bsr=bsr,
        store=store,
        report=report,
        labels=resolution.labels,
        prefetched=resolution.artifacts,
        on_module=on_module,
        parallel=parallel,
        use_bundles=use_bundles,
        bundle=bundle,
        registry_down=resolution.registry_down,
        buf_cache=buf_cache,
        need_files=need_files,
        whole_lock=True,
        lock_pack=packs,
        pack_read=pack_read,
    )
    return artifacts, lock


def _kept_sections(project: Path, new: BufLock) -> str:
    """The plugins:/policies: sections of the current buf.lock, which --update-lock keeps
    byte for byte; an error, before anything is written, where they cannot be kept."""
    path = project / BUF_LOCK
    if not path.is_file():
        return ""
    try:
        extra = read_buf_lock(path).extra
    except ConfigError as exc:  # buf refuses it too; the user decides what it should keep
        keep = "--update-lock keeps its plugins:/policies:: fix it, or delete it"
        raise ConfigError(
            exc.path,
            exc.problem,
            line=exc.line,
            entry=exc.entry,
            hint=f"{exc.hint}; {keep}" if exc.hint else keep,
        ) from None
    if extra is None:
        raise ConfigError(
            path,
            "its plugins:/policies: are in flow style or use anchors: --update-lock cannot keep"
            " them byte for byte",
            hint="write them in block style, or run buf dep update",
        )
    if extra and new.version != "v2":
        raise ConfigError(
            path,
            f"it has plugins:/policies:, which a {new.version} buf.lock (for this {new.version}"
            " buf.yaml) cannot hold",
            hint="move buf.yaml to version v2, or remove them",
        )
    return extra


def record_fetch(
    store: LocalStore | FallibleStore | None,
    report: FetchReport,
    started: float,
    *,
    team: str,
    member: str,
    operation: str = "fetch",
    project: str = "",
    failed: BaseException | None = None,
) -> None:
    """Usage events of what each module came from, and the audit records of the command
    (and of the BSR downloads it published); never fails the command."""
    root = getattr(store, "root", None)
    if root is None or getattr(store, "broken", False):
        return
    from bsr_team_cache.usage.record import record_modules

    record_modules(root, report.modules, report.warnings, started, team=team, member=member,
                   operation=operation, project=project, failed=failed)  # fmt: skip


def obtain(
    deps: list[LockedDep],
    *,
    team: TeamContext,
    bsr: BSRModuleClient,
    store: LocalStore | FallibleStore | None,
    report: FetchReport,
    labels: dict[str, list[str]] | None = None,
    prefetched: dict[str, ModuleArtifact] | None = None,
    on_module: Callable[[ModuleResult, int, int], None] | None = None,
    parallel: int = 16,
    use_bundles: bool = True,
    bundle: str | None = None,
    registry_down: str | None = None,
    buf_cache: Path | None = None,
    need_files: bool = True,
    whole_lock: bool = False,
    lock_pack: bool = False,
    pack_read: PackRead | None = None,
) -> dict[str, ModuleArtifact]:
    """Verified artifacts of ``deps`` by commit: local store, team registry (bundles first),
    then the BSR (published back), each written to ``buf_cache`` (if given) as it comes in.
    Results and warnings go to ``report``. ``registry_down``: why the team registry is known
    to be unusable already (it is then skipped). Without ``need_files``, a dep that the store
    has and whose buf cache entry is complete is a hit without reading it (and is not in the
    result). ``whole_lock``: ``deps`` are a buf.lock's, so every dependency an artifact names
    must be pinned there. With ``lock_pack`` too, a machine missing most of them reads the
    lock's pack first, and publishes one if the team has none (team/packs.py)."""
    local = fallible(store, report)
    run = _Run(
        team,
        local,
        report,
        on_module,
        max(1, parallel),
        buf_cache=buf_cache,
        need_files=need_files,
    )
    if registry_down is not None:
        run.mark_registry_down(registry_down)
    run.labels = labels or {}
    run.pinned = {str(d.module): d for d in deps}
    run.use_bundles = use_bundles
    run.bundle = bundle
    run.whole_lock = whole_lock
    run.pack_read = pack_read
    keys = [(d.module, d.commit) for d in deps]
    run.total = len(keys)
    with (
        _maybe(local and local.using(keys)),
        _maybe(local and local.batch()),
        _pack_closed(run),
    ):
        pending = list(deps) if need_files else _already_placed(run, list(deps))
        with _placing(run, len(pending)):
            pending = _from_local(run, pending, prefetched or {})
            if lock_pack and whole_lock:
                _look_up_pack(run, deps, pending)
            for start in range(0, len(pending), FILL_BATCH):
                batch = pending[start : start + FILL_BATCH]
                with _maybe(local and local.filling((d.module, d.commit) for d in batch)):
                    try:
                        batch = _from_local(run, batch, {})  # filled by another meanwhile?
                        batch = _from_pack(run, batch)
                        batch = _from_registry(run, batch)
                        if batch:
                            _from_bsr(run, batch, bsr)
                    finally:
                        if local is not None:
                            local.flush()  # visible before the fill locks go: single-flight
        if run.pack is not None and run.report.pack_used:
            _check_pack_layer(run, run.pack)
        if run.pack_missing:
            _publish_pack(run, deps)
    return run.artifacts


@contextlib.contextmanager
def _placing(run: _Run, entries: int) -> Iterator[None]:
    """buf's cache entries placed in the block written by a second process, when there are
    enough of them (bufcache/placer.py); every one written when the block ends. A block that
    fails leaves those the process had not written yet unwritten (buf's cache only ever lacks
    entries)."""
    if run.buf_cache is None or entries < 2:  # one entry: no worker (nor its module loaded)
        yield
        return
    from bsr_team_cache.bufcache.placer import Placer

    run.placer = Placer.start(entries)
    try:
        yield
        if run.placer is not None:
            run.placer.finish()
    finally:
        if run.placer is not None:
            run.placer.close()
            run.placer = None


@contextlib.contextmanager
def _pack_closed(run: _Run) -> Iterator[None]:
    """The lock pack's layer, if it is still arriving, is read no further once the block ends,
    whether this fetch took the early read or not (only an early read's layer arrives: the
    fetch's own read_pack reads it whole)."""
    try:
        yield
    finally:
        if run.pack_read is not None:
            run.pack_read.close()


def _check_pack_layer(run: _Run, pack: Pack) -> None:
    """A pack layer read as it arrived whose read failed after the fetch took its members (at
    its digest, checked after its last byte): said, and the pack replaced when this fetch can.
    The members taken were each checked on their own (packs.py), so they stand."""
    failure = pack.layer_failure()
    if failure is None:
        return
    run.report.warnings.append(f"lock pack unusable ({pack.where}: {failure})")
    if not isinstance(failure, RegistryError):
        run.pack_missing = True


def _already_placed(run: _Run, deps: list[LockedDep]) -> list[LockedDep]:
    """Hits that need no reading: the store has the entry, recorded with the digest buf.lock
    pins, and buf's cache entry for it is complete (buf verifies that digest when it reads the
    files). Returns the other deps."""
    if run.store is None:
        return deps
    t0 = time.time()
    indexed = run.store.indexed((d.module, d.commit) for d in deps)
    pending = []
    for dep in deps:
        entry = indexed.get((str(dep.module), dep.commit))
        recorded = None if entry is None else (entry.b4 if dep.pins_b4 else entry.digest)
        kind = SHAKE256 if dep.pins_b4 else B5
        if recorded != str(dep.digest) or (
            run.buf_cache is not None
            and not entry_complete(run.buf_cache, dep.module, dep.commit, kind)
        ):
            pending.append(dep)
            continue
        assert entry is not None
        run.store.touch(dep.module, dep.commit)
        run.add(
            ModuleResult(
                str(dep.module),
                dep.commit,
                LOCAL,
                entry.files_bytes,
                time.time() - t0,
                digest=str(dep.digest),
            )
        )
    return pending


@contextlib.contextmanager
def _maybe(manager: contextlib.AbstractContextManager | bool | None) -> Iterator[None]:
    if isinstance(manager, contextlib.AbstractContextManager):
        with manager:
            yield
    else:
        yield


def _from_local(
    run: _Run, deps: list[LockedDep], prefetched: dict[str, ModuleArtifact]
) -> list[LockedDep]:
    pending = []
    for dep in deps:
        t0 = time.time()
        artifact = prefetched.get(dep.commit)
        tier = LOCAL
        if artifact is None and run.store is not None:
            try:
                artifact = run.store.get(dep.module, dep.commit)
            except InvalidContentError as exc:
                run.report.warnings.append(f"{exc}; refetching")
        elif artifact is not None and (
            run.store is None or not run.store.contains(dep.module, dep.commit)
        ):
            tier = TEAM  # read from the team registry while resolving offline
            run.keep(artifact)
        artifact = _matching(run, dep, artifact, "the local copy")
        if artifact is None:
            pending.append(dep)
        else:
            run.place(dep, artifact)
            run.found(dep, artifact, tier, t0)
    return pending


def pinned_digest(dep: LockedDep, artifact: ModuleArtifact) -> Digest | None:
    """The artifact's digest of the type buf.lock pins (b4 for v1 locks, else b5)."""
    if dep.pins_b4:
        return artifact.b4 if artifact.has_b4 else None
    return artifact.digest


def _matching(
    run: _Run, dep: LockedDep, artifact: ModuleArtifact | None, what: str
) -> ModuleArtifact | None:
    """The artifact if its digest is the one buf.lock pins; else None (with a warning, unless
    it only lacks the b4 digest a v1 lock asks for: made for v2 projects, it is not wrong)."""
    problem = _mismatch(run, dep, artifact, what)
    if problem:
        run.report.warnings.append(problem)
    return None if problem is not None else artifact


def _mismatch(run: _Run, dep: LockedDep, artifact: ModuleArtifact | None, what: str) -> str | None:
    """None if the artifact is the one buf.lock pins; else why not ("" if no warning is due)."""
    if artifact is None:
        return ""
    digest = pinned_digest(dep, artifact)
    if digest is None:
        return ""
    if digest != dep.digest:
        return (
            f"{dep}: {what} has digest {digest}, buf.lock says {dep.digest};"
            " fetching it again from the next tier"
        )
    b4 = digest.type == SHAKE256
    if (b4 or run.whole_lock) and (problem := _unpinned_dep(run, artifact, b4)):
        return f"{dep}: {what} names {problem}; fetching it again from the next tier"
    return None


def _unpinned_dep(run: _Run, artifact: ModuleArtifact, b4: bool) -> str | None:
    """The deps buf's entry lists (module, commit, digest) must be the ones buf.lock pins (a
    lock pins every module of the closure, and buf finds each dep in its cache by commit): b4
    covers none of them, and b5 covers the deps' digests but not their commits, so a peer could
    otherwise write commits into buf's module.yaml that break every build."""
    for d in artifact.deps:
        pinned = run.pinned.get(str(d.module))
        digest = d.b4 if b4 else d.digest
        if pinned is None or (pinned.commit, pinned.digest) != (d.commit, digest):
            return f"dependency {d.module}:{d.commit} ({digest}), which buf.lock does not pin"
    return None


def _from_registry(run: _Run, deps: list[LockedDep]) -> list[LockedDep]:
    """The team registry tier. When this machine knows the team configuration (read within the
    last minutes), the caller named a bundle, or the deps are many (one round trip to decide
    is then little, and a bundle spares a request per module), the bundle is pulled first and
    only what it lacks is pulled module by module. Otherwise module manifests are requested at
    once, in parallel, while the team configuration says whether a bundle covers these modules;
    each module pull waits for that decision before reading its files layer: a bundle costs no
    extra round trip when it exists, and looking for one costs none when it does not."""
    if run.registry_down or not deps:
        return deps
    wants_bundle = run.use_bundles and (len(deps) >= 2 or run.bundle is not None)
    # Deciding first costs no round trip then, and spares one request per covered module.
    decide_first = wants_bundle and (
        run.bundle is not None or len(deps) >= DECIDE_FIRST_DEPS or _team_config_known(run)
    )
    from bsr_team_cache.oci.artifact import StreamedModule, pull_module

    decided = threading.Event()
    covered: set[str] = set()

    def pull(
        dep: LockedDep,
    ) -> tuple[LockedDep, ModuleArtifact | None, int | None, str | None, bool, float]:
        """Pull, check against buf.lock, store and place in buf's cache, in this worker."""
        t0 = time.time()

        def go_on() -> bool:
            decided.wait()
            return dep.commit not in covered

        from bsr_team_cache.team.stream_sinks import layer_sinks

        try:
            artifact = pull_module(
                run.team.registry,
                run.team.repo(dep.module),
                dep.module,
                dep.commit,
                proceed=go_on,
                private_keys=run.team.private_keys(),
                # Files not wanted in memory: a large layer streams into the store and buf's
                # cache, and is made visible by keep and place.
                sinks=None if run.need_files else layer_sinks(run.store, run.buf_cache, dep),
            )
        except KeyUnavailableError as exc:
            run.keyless.add(dep.commit)
            return dep, None, None, f"{exc}; fetching it from the BSR", False, t0
        except InvalidContentError as exc:  # this artifact only: the next tier has it
            return dep, None, None, f"{exc}; fetching it from the BSR", False, t0
        except RegistryError as exc:  # the registry itself: unreachable, refusing us
            return dep, None, None, str(exc), True, t0
        try:
            problem = _mismatch(run, dep, artifact, "the team registry's copy")
            if problem is not None:
                return dep, None, None, problem or None, False, t0
            assert artifact is not None
            run.keep(artifact)
            run.place(dep, artifact)
        finally:
            if isinstance(artifact, StreamedModule):
                artifact.discard()  # what was staged and not made visible (none, once placed)
        # Stored and placed: without need_files, no files are held until the batch ends.
        return dep, artifact if run.need_files else None, artifact.size, None, False, t0

    pending: list[LockedDep] = []
    run.bundle_problem = None
    with _pool(min(run.parallel, len(deps))) as pool:
        if decide_first:
            try:
                covered.update(_from_bundle(run, deps))
            finally:
                decided.set()
        futures = [pool.submit(_held, pull, dep) for dep in deps if dep.commit not in covered]
        try:
            if wants_bundle and not decide_first:
                covered.update(_from_bundle(run, deps))
        finally:
            decided.set()
        for future in futures:
            dep, artifact, size, problem, down, t0 = future.result()
            if dep.commit in covered:
                continue
            if down:
                run.mark_registry_down(problem or "")
                pending.append(dep)
                continue
            if problem:
                run.report.warnings.append(problem)
            if size is None:
                pending.append(dep)
                continue
            run.found(dep, artifact, TEAM, t0, size=size)
    if run.bundle_problem and not run.registry_down:  # else the registry warning says it all
        run.report.warnings.append(run.bundle_problem)
    return pending


def _trusted(config: TeamConfig | None):
    """What a signed team's bundles are verified against (None: an unsigned team, whose
    bundles are accepted as they are; the signing machinery then never loads)."""
    if config is None or not config.signed:
        return None
    from bsr_team_cache.team.trust import TrustedConfig

    return TrustedConfig(config, True)


def _team_config_known(run: _Run) -> bool:
    """Whether the team configuration is known here without asking the registry."""
    key = team_config_key(run.team)
    return run.store is not None and run.store.kv_get(key, TEAM_CONFIG_MAX_AGE) is not None


def _from_bundle(run: _Run, deps: list[LockedDep]) -> set[str]:
    """Commits obtained from the team bundle that covers most of ``deps`` (none if no bundle
    covers two or more); problems become warnings and the modules are pulled one by one."""
    from bsr_team_cache.team.bundles import (
        LATEST,
        bundle_repository,
        pull_members,
        read_bundle,
    )

    t0 = time.time()
    wanted = {f"{d.module}:{d.commit}": d for d in deps}
    try:
        config = _team_config_or_defaults(run)
        if run.bundle:  # named by the caller: no need to choose
            name, reference = run.bundle, LATEST
        else:
            if config is None:
                return set()
            scored = [
                (len(set(b.modules) & wanted.keys()), -len(b.modules), b) for b in config.bundles
            ]
            best = max((x for x in scored if x[0] >= 2), key=lambda x: x[:2], default=None)
            if best is None:
                return set()
            name, reference = best[2].name, best[2].version
        repo = bundle_repository(run.team.team, name, run.team.namespace)
        found = read_bundle(
            run.team.registry,
            repo,
            reference,
            trusted=_trusted(config),
            context_repo=bundle_repository(run.team.team, name),
        )
        if found is None:
            run.report.warnings.append(f"bundle {name}:{reference} is missing")
            return set()
        bundle = found[0]
        members = [m for m in bundle.members if m.key in wanted]
        artifacts = pull_members(
            run.team.registry, repo, members, run.parallel, private_keys=run.team.private_keys()
        )
    except InvalidContentError as exc:
        run.report.warnings.append(f"team bundle: {exc}; fetching modules one by one")
        return set()
    except RegistryError as exc:
        run.bundle_problem = f"team bundle unusable ({exc}); fetching modules one by one"
        return set()
    label = f"{bundle.name}:{bundle.version}"
    run.report.bundles.append(label)
    matched = []
    for artifact in artifacts:
        dep = wanted[f"{artifact.module}:{artifact.commit}"]
        if _matching(run, dep, artifact, f"bundle {label}") is not None:
            matched.append((dep, artifact))  # else pulled one by one (bundles hold no b4)

    def keep_and_place(item: tuple[LockedDep, ModuleArtifact]) -> None:
        run.keep(item[1])
        run.place(*item)

    # A bundle's members arrived as files layers (kept); one made here counts its files' bytes.
    sizes = [len(a.layer) if a.layer is not None else a.size for _, a in matched]
    with _cpu_pool(run, sizes) as pool:
        list(pool.map(keep_and_place, matched))
    for dep, artifact in matched:
        run.found(dep, artifact, TEAM, t0, bundle=label)
    return {dep.commit for dep, _ in matched}


def _look_up_pack(run: _Run, deps: list[LockedDep], pending: list[LockedDep]) -> None:
    """Read the lock's pack (one request, two for a large one) when this machine lacks most of
    the lock's modules; a named bundle, --no-bundles or a few misses go module by module."""
    if (
        run.registry_down
        or not run.use_bundles
        or run.bundle is not None
        or not pack_worth_reading(len(pending), len(deps))
    ):
        return
    from bsr_team_cache.team.names import pack_repository, pack_tag
    from bsr_team_cache.team.packs import read_pack

    tag = pack_tag(deps)
    run.report.pack = tag
    wanted = {f"{d.module}:{d.commit}": d for d in deps}
    repo, early = pack_repository(run.team.team, run.team.namespace), run.pack_read
    try:
        if early is not None and early.serves(run.team.registry, repo, tag):
            run.pack = early.result()  # requested while this module loaded
        else:
            run.pack = read_pack(run.team.registry, repo, tag, wanted)
    except InvalidContentError as exc:
        run.report.warnings.append(f"lock pack unusable ({exc}); fetching modules one by one")
        run.pack_missing = True  # replaced by this fetch's, when it can make one
        return
    except AccessDeniedError as exc:  # a registry whose policy does not know packs
        run.report.warnings.append(f"lock pack not readable ({exc}); fetching modules one by one")
        return
    except RegistryError as exc:  # the registry itself: unreachable
        run.mark_registry_down(str(exc))
        return
    run.pack_missing = run.pack is None


def _from_pack(run: _Run, deps: list[LockedDep]) -> list[LockedDep]:
    """The deps the lock's pack holds, each checked as a module pulled on its own and against
    buf.lock, stored and placed (see _cpu_pool); returns the others (pulled one by one). A
    pack whose layer could not be read to the end is left for the rest of the fetch."""
    pack = run.pack
    in_pack = [d for d in deps if pack is not None and d.commit in pack]
    if pack is None or not in_pack:
        return deps
    t0 = time.time()

    from bsr_team_cache.team.packs import PackLayerUnreadable  # loaded with the pack

    unreadable: list[PackLayerUnreadable] = []

    def one(dep: LockedDep) -> tuple[LockedDep, ModuleArtifact | None, str]:
        try:
            artifact = pack.artifact(dep, run.team.private_keys())
        except KeyUnavailableError:
            return dep, None, ""  # its own pull says what to do
        except PackLayerUnreadable as exc:  # said once, below
            unreadable.append(exc)
            return dep, None, ""
        except InvalidContentError as exc:
            return dep, None, f"{exc}; fetching it on its own"
        problem = _mismatch(run, dep, artifact, f"the lock pack {run.report.pack[:17]}'s copy")
        if problem is not None:
            return dep, None, problem
        run.keep(artifact)
        run.place(dep, artifact)
        return dep, artifact, ""

    obtained = set()
    with _cpu_pool(run, [pack.layer_size(d.commit) for d in in_pack]) as pool:
        for dep, artifact, problem in pool.map(functools.partial(_held, one), in_pack):
            if artifact is None:
                if problem:
                    run.report.warnings.append(problem)
                    run.pack_missing = True  # a bad member: replaced when this fetch can
                continue
            run.found(dep, artifact, TEAM, t0)
            obtained.add(dep.commit)
    if unreadable:
        left = len(in_pack) - len(obtained)
        run.report.warnings.append(
            f"lock pack unusable ({unreadable[0]}); fetching its other {left} modules one by one"
        )
        if not isinstance(unreadable[0].cause, RegistryError):
            run.pack_missing = True  # a bad layer: replaced when this fetch can
        pack.close()
        run.pack = None  # the next batches go one by one, without saying so again
    run.report.pack_used = run.report.pack_used or bool(obtained)
    return [d for d in deps if d.commit not in obtained]


def _publish_pack(run: _Run, deps: list[LockedDep]) -> None:
    """Make the lock's pack from the local store when the team has none and this machine took
    modules from the team registry (so it is at least the second machine to use the lock).
    Not for teams that encrypt, keep downloads private, or where this member only reads."""
    from bsr_team_cache.team.names import pack_repository
    from bsr_team_cache.team.packs import (
        PACK_MAX_BYTES,
        PACK_MEMBER_MAX_BYTES,
        PackTooLargeError,
        push_pack,
    )

    from_team = sum(1 for m in run.report.modules if m.tier == TEAM)
    if run.registry_down or run.store is None or run.keyless or from_team < PACK_MIN_MODULES:
        return
    try:
        config = _team_config_or_defaults(run)
    except RegistryError:
        return
    # A member holding keys for encrypted layers makes no pack whatever the configuration says
    # (one that cannot be read must not turn an encrypted team's modules into a plain pack);
    # a member without them could not have read an encrypted team's modules (run.keyless).
    try:
        holds_keys = bool(run.team.private_keys())
    except BSRTeamCacheError:
        holds_keys = True  # keys are set, if unusable: the same rule
    if holds_keys or (
        config is not None
        and (
            not config.shared_cache or config.encrypt or config.role_of(run.team.member) == "reader"
        )
    ):
        return
    indexed = run.store.indexed((d.module, d.commit) for d in deps)
    members, total = [], 0
    for dep in deps:
        entry = indexed.get((str(dep.module), dep.commit))
        recorded = None if entry is None else (entry.b4 if dep.pins_b4 else entry.digest)
        encoded = run.store.encoded(dep.module, dep.commit) if recorded == str(dep.digest) else None
        if encoded is None:
            return  # not all here as buf.lock pins them: no pack this time
        if len(encoded[1]) > PACK_MEMBER_MAX_BYTES:
            continue  # large modules are streamed on their own, not packed
        total += len(encoded[1])
        if total > PACK_MAX_BYTES:
            return
        members.append(encoded)
    if len(members) < PACK_MIN_MODULES:
        return
    try:
        push_pack(
            run.team.registry,
            pack_repository(run.team.team, run.team.namespace),
            run.report.pack,
            members,
        )
    except PackTooLargeError:
        return  # its manifest would be beyond registries' limits: the lock goes without
    except RegistryError as exc:
        run.report.warnings.append(f"could not publish the lock pack: {exc}")
        return
    run.report.pack_published = True


def _from_bsr(run: _Run, misses: list[LockedDep], bsr: BSRModuleClient) -> None:
    """One batched download. For a v1 lock (b4 digests) also the b4 graph and the v1beta1
    download (a v1 module's own buf.yaml/buf.lock): the artifact then serves both types."""
    from bsr_team_cache.oci.artifact import ModuleArtifact, ModuleDepRecord

    t0 = time.time()
    refs = [ModuleRef(d.module, d.commit) for d in misses]
    b4 = any(d.pins_b4 for d in misses)
    try:
        graph = bsr.graph(refs)
        graph4 = bsr.graph(refs, b4=True) if b4 else None
        lacking = [
            str(d)
            for d in misses
            if d.commit not in graph.commits or (graph4 and d.commit not in graph4.commits)
        ]
        if lacking:
            raise BSRError(
                f"the BSR's dependency graph lacks the pinned commit(s) {', '.join(lacking)};"
                " check buf.lock (buf dep update) or the BSR"
            )
        if graph4 is not None and not graph4.same_shape(graph):
            raise InvalidContentError(
                f"the BSR's b4 and b5 graphs of {', '.join(str(d) for d in misses)} differ"
                " (other commits or edges): not using either"
            )
        contents = bsr.download([graph.commits[d.commit] for d in misses], b4=b4)
    except UnavailableError as exc:
        names = ", ".join(str(d) for d in misses)
        where = "the local store or the team registry"
        if run.registry_down:
            where += f" (unreachable: {run.registry_down})"
        raise BSRTeamCacheError(
            f"cannot fetch {names}: not in {where}, and the BSR is unavailable ({exc})"
        ) from None
    elapsed = (time.time() - t0) / max(1, len(misses))
    fetched = []
    for dep, content in zip(misses, contents, strict=True):
        deps = tuple(
            ModuleDepRecord(
                c.module,
                c.commit_id,
                c.digest,
                graph4.commits[c.commit_id].digest if graph4 else None,
            )
            for c in graph.transitive_deps(dep.commit)
        )
        artifact = ModuleArtifact(
            dep.module,
            dep.commit,
            graph.commits[dep.commit].digest,
            deps,
            content.files,
            content.commit.create_time.isoformat(),
            tuple(run.labels.get(dep.commit, ())),
            b4=content.commit.digest if b4 else None,
            v1_files=content.v1_files,
        )
        artifact.verify()
        digest = pinned_digest(dep, artifact)
        if digest != dep.digest:
            raise DigestMismatchError(
                f"{dep}: the BSR serves digest {digest}, buf.lock says {dep.digest}"
            )
        run.keep(artifact)
        if run.need_files:
            run.artifacts[dep.commit] = artifact
        fetched.append((dep, artifact))
    # Stored and published before buf's cache is written: a download is never lost to a
    # buf cache that cannot be written.
    published = _publish(run, [a for _, a in fetched if a.commit not in run.keyless])
    for dep, artifact in fetched:
        run.place(dep, artifact)
        run.add(
            ModuleResult(
                str(dep.module),
                dep.commit,
                BSR,
                artifact.size,
                elapsed,
                dep.commit in published,
                digest=str(dep.digest),
            )
        )


def _publish(run: _Run, artifacts: list[ModuleArtifact]) -> set[str]:
    """Push BSR downloads to the team registry, in parallel; failures are warnings. A team
    whose configuration turns ``shared_cache`` off keeps downloads private."""
    from bsr_team_cache.oci.artifact import push_module

    if run.registry_down is not None or not artifacts:
        return set()
    try:
        config = _team_config_or_defaults(run)
    except RegistryError as exc:
        run.report.warnings.append(f"team configuration unreadable ({exc}); not publishing")
        return set()
    if config is not None and not config.shared_cache:
        return set()
    try:
        recipients = config.recipients() if config is not None else None
    except ConfigError as exc:
        run.report.warnings.append(f"not publishing: {exc}")
        return set()

    def push(artifact: ModuleArtifact) -> tuple[ModuleArtifact, str | None]:
        try:
            push_module(
                run.team.registry, run.team.repo(artifact.module), artifact, encryption=recipients
            )
            return artifact, None
        except (RegistryError, InvalidContentError, ConfigError) as exc:
            return artifact, str(exc)

    published = set()
    with _pool(min(run.parallel, len(artifacts))) as pool:
        for artifact, problem in pool.map(push, artifacts):
            if problem is None:
                published.add(artifact.commit)
            else:
                run.report.warnings.append(
                    f"could not publish {artifact.module}:{artifact.commit} to the team"
                    f" registry: {problem}"
                )
    return published


TEAM_CONFIG_MAX_AGE = 300.0  # seconds a member trusts its copy of the team configuration


def team_config_key(team: TeamContext) -> str:
    """Where the local store keeps its copy of a team's configuration."""
    return f"team-config:{team.registry.describe()}:{team.namespace}:{team.team}"


def team_config_cached(
    team: TeamContext,
    store: LocalStore | FallibleStore | None,
    warnings: list[str] | None = None,
) -> TeamConfig | None:
    """The team configuration this machine trusts (team/trust.py), from the local store's copy
    if recent (saves a round trip per fetch), else from the registry (and remembered). A
    configuration that is not trusted is a warning; a malformed local copy is read again."""
    key = team_config_key(team)
    if store is not None:
        cached = store.kv_get(key, TEAM_CONFIG_MAX_AGE)
        if cached == "null":
            return None
        if cached is not None:
            from bsr_team_cache.team.config import config_from_json

            with contextlib.suppress(ValueError, RecursionError, InvalidContentError):
                return config_from_json(json.loads(cached), key)
    from bsr_team_cache.team.trust import read_trusted_config

    said: list[str] = []
    trusted = read_trusted_config(team.registry, team.team, team.namespace, store, said)
    if said and trusted.config is None and not trusted.signed:
        raise InvalidContentError(said[-1])  # malformed, as before: the defaults apply
    if warnings is not None:
        warnings.extend(said)
    from bsr_team_cache.team.bundle_index import with_bundle_index

    config = with_bundle_index(team.registry, team.team, trusted.config, team.namespace)
    if store is not None:
        store.kv_put(key, json.dumps(config.to_json() if config else None))
    return config


def _team_config_or_defaults(run: _Run) -> TeamConfig | None:
    """The team configuration, read once per fetch (a registry that does not answer is asked
    again); a malformed one is a warning, and the defaults apply."""
    if run.config is None:
        try:
            config = team_config_cached(run.team, run.store, run.report.warnings)
        except InvalidContentError as exc:
            run.report.warnings.append(f"team configuration ignored ({exc}); using the defaults")
            config = None
        run.config = (config,)
    return run.config[0]
