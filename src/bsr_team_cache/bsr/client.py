"""A client for the subset of ``buf.registry.module.v1`` that dependency caching needs.

Resolve refs to commits (CommitService.GetCommits), get the transitive graph
(GraphService.GetGraph), download files (DownloadService.Download), and map commit ids to module
names (ModuleService.GetModules, OwnerService.GetOwners): the calls buf makes on a cache miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bsr_team_cache._lazy import lazy_import
from bsr_team_cache.domain.digest import B5, SHAKE256, Digest, b5_from_contents
from bsr_team_cache.domain.files import validate_file_set
from bsr_team_cache.domain.moduleref import (
    ModuleName,
    ModuleRef,
    normalize_commit_id,
    parse_module_name,
)
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentError,
)
from bsr_team_cache.limits import MAX_V1_FILE_BYTES, limits

if TYPE_CHECKING:
    from bsr_team_cache.bsr.connect import ConnectTransport
    from bsr_team_cache.bsr.proto import module_v1_pb2 as mpb
    from bsr_team_cache.bsr.proto import module_v1beta1_pb2 as bpb
    from bsr_team_cache.bsr.proto import owner_v1_pb2 as opb
else:
    # Loaded on first use: a fetch served from the local store never needs protobuf.
    mpb = lazy_import("bsr_team_cache.bsr.proto.module_v1_pb2")
    bpb = lazy_import("bsr_team_cache.bsr.proto.module_v1beta1_pb2")
    opb = lazy_import("bsr_team_cache.bsr.proto.owner_v1_pb2")

MODULE_PKG = "buf.registry.module.v1"
# b4 digests (v1 buf.lock projects) come from v1beta1, as buf asks for them.
MODULE_V1BETA1_PKG = "buf.registry.module.v1beta1"
OWNER_PKG = "buf.registry.owner.v1"
MAX_BATCH = 250  # the API's repeated.max_items on every request
_V1_FIELDS = (("buf.yaml", "v1_buf_yaml_file"), ("buf.lock", "v1_buf_lock_file"))


@dataclass(frozen=True)
class CommitInfo:
    """A BSR commit of one module, with its b5 digest (or its b4 one, when asked for)."""

    module: ModuleName
    commit_id: str
    digest: Digest
    create_time: datetime
    owner_id: str = ""
    module_id: str = ""


@dataclass
class ModuleGraph:
    """Commits reachable from the requested refs; ``deps[c]`` are the direct deps of commit c."""

    commits: dict[str, CommitInfo] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)

    def transitive_deps(self, commit_id: str) -> list[CommitInfo]:
        """All commits ``commit_id`` depends on, directly or not, sorted by module name."""
        seen: set[str] = set()
        stack = list(self.deps.get(commit_id, []))
        while stack:
            current = stack.pop()
            if current in seen or current == commit_id:
                continue
            seen.add(current)
            stack.extend(self.deps.get(current, []))
        return sorted((self.commits[c] for c in seen), key=lambda c: str(c.module))

    def same_shape(self, other: ModuleGraph) -> bool:
        """The same commits of the same modules with the same edges (digests aside): what
        the b4 and the b5 graph of one set of commits must be."""

        def shape(graph: ModuleGraph) -> dict[str, tuple[str, frozenset[str]]]:
            return {
                c: (str(info.module), frozenset(graph.deps.get(c, ())))
                for c, info in graph.commits.items()
            }

        return shape(self) == shape(other)


@dataclass(frozen=True)
class ModuleContent:
    """The files of one commit as the BSR serves them (the digest's file set)."""

    commit: CommitInfo
    files: dict[str, bytes]
    v1_files: dict[str, bytes] = field(default_factory=dict)  # v1beta1: buf.yaml, buf.lock

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.files.values())


def _batches(items: Sequence, size: int = MAX_BATCH) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _resource_ref(ref: ModuleRef, pb=None):
    """A ResourceRef by name (``pb``: the v1 messages, or v1beta1's, which are the same)."""
    pb = pb or mpb
    name = pb.ResourceRef.Name(owner=ref.module.owner, module=ref.module.name)
    if ref.ref is not None:
        name.ref = ref.ref
    return pb.ResourceRef(name=name)


def _digest_from_proto(d, what: str, b4: bool = False) -> Digest:
    """The digest a Commit carries: b5 from v1 (type 1); from v1beta1, b4 (type 1) when asked
    for, else b5 (type 2)."""
    if b4:
        expected, kind = bpb.DIGEST_TYPE_B4, SHAKE256
    else:
        expected, kind = mpb.DIGEST_TYPE_B5, B5
    if d.type != expected or len(d.value) != 64:
        raise InvalidContentError(
            f"{what}: the registry returned an unsupported digest (type {d.type})"
        )
    return Digest(kind, bytes(d.value))


def _commit_id(value: str, host: str) -> str:
    """A commit id from the BSR (dashed or not), or an InvalidContentError."""
    try:
        return normalize_commit_id(value)
    except BSRTeamCacheError:
        raise InvalidContentError(
            f"{host}: the registry sent an invalid commit id {value!r}"
        ) from None


def _module_name(host: str, owner: str, name: str) -> ModuleName:
    """A module name from the BSR, checked as buf.yaml names are (no newlines, no '/')."""
    try:
        return parse_module_name(f"{host}/{owner}/{name}")
    except BSRTeamCacheError:
        raise InvalidContentError(
            f"{host}: the registry sent an invalid module name {owner!r}/{name!r}"
        ) from None


def _time(ts) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


class BSRModuleClient:
    """Talks Connect to whatever registry host each module name carries."""

    def __init__(self, transport: ConnectTransport | None = None) -> None:
        # Made on first use: a fetch served from the local store never imports the HTTP stack.
        self._transport = transport
        self._owns_transport = transport is None

    @property
    def transport(self) -> ConnectTransport:
        if self._transport is None:
            from bsr_team_cache.bsr.connect import ConnectTransport

            self._transport = ConnectTransport()
        return self._transport

    def close(self) -> None:
        if self._owns_transport and self._transport is not None:
            self._transport.close()

    def server_warnings(self) -> list[str]:
        """What the registries said in ``buf-warning-bin`` since the last call (each once), so
        that a client used for several fetches reports each warning with its own fetch."""
        warnings = getattr(self._transport, "warnings", None)
        if not warnings:
            return []
        said = list(warnings)
        warnings.clear()
        return said

    def __enter__(self) -> BSRModuleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, host: str, pkg: str, service: str, method: str, req, resp_type):
        return self.transport.call(host, f"{pkg}.{service}", method, req, resp_type)

    # -- CommitService -------------------------------------------------------------------
    def resolve(self, refs: Sequence[ModuleRef], *, b4: bool = False) -> list[CommitInfo]:
        """Resolve each ref (label, commit or default label) to a commit, in order; the same
        module may come several times (under different labels). With ``b4``, the commits
        carry b4 digests."""
        out: list[CommitInfo | None] = [None] * len(refs)
        pkg, pb = (MODULE_V1BETA1_PKG, bpb) if b4 else (MODULE_PKG, mpb)
        for host, indexed in _by_host(refs).items():
            for batch in _batches(indexed):
                req = pb.GetCommitsRequest(resource_refs=[_resource_ref(r, pb) for _, r in batch])
                if b4:
                    req.digest_type = bpb.DIGEST_TYPE_B4
                resp = self._call(
                    host, pkg, "CommitService", "GetCommits", req, pb.GetCommitsResponse
                )
                if len(resp.commits) != len(batch):
                    raise InvalidContentError(
                        f"GetCommits on {host}: asked for {len(batch)} refs,"
                        f" got {len(resp.commits)} commits"
                    )
                for (index, ref), commit in zip(batch, resp.commits, strict=True):
                    out[index] = self._commit_info(ref.module, commit, b4)
        return [c for c in out if c is not None]

    def _commit_info(self, module: ModuleName, commit, b4: bool = False) -> CommitInfo:
        return CommitInfo(
            module=module,
            commit_id=_commit_id(commit.id, module.registry),
            digest=_digest_from_proto(commit.digest, f"commit {commit.id} of {module}", b4),
            create_time=_time(commit.create_time),
            owner_id=commit.owner_id,
            module_id=commit.module_id,
        )

    # -- GraphService + names ------------------------------------------------------------
    def graph(self, refs: Sequence[ModuleRef], *, b4: bool = False) -> ModuleGraph:
        """The transitive dependency graph of ``refs`` (labels, commits or default labels;
        one ref per module, as the API requires). With ``b4``, commits carry b4 digests."""
        modules = [r.module for r in refs]
        if len(set(modules)) != len(modules):
            raise BSRTeamCacheError("a graph request names a module twice (one ref per module)")
        graph = ModuleGraph()
        for host, indexed in _by_host(refs).items():
            for batch in _batches(indexed):
                if b4:
                    req = bpb.GetGraphRequest(
                        resource_refs=[
                            bpb.GetGraphRequest.ResourceRef(
                                resource_ref=_resource_ref(r, bpb), registry=host
                            )
                            for _, r in batch
                        ],
                        digest_type=bpb.DIGEST_TYPE_B4,
                    )
                    resp = self._call(
                        host,
                        MODULE_V1BETA1_PKG,
                        "GraphService",
                        "GetGraph",
                        req,
                        bpb.GetGraphResponse,
                    )
                    commits = []
                    for node in resp.graph.commits:
                        if node.registry != host:
                            raise _federated(host, node.registry)
                        commits.append(node.commit)
                else:
                    req = mpb.GetGraphRequest(resource_refs=[_resource_ref(r) for _, r in batch])
                    resp = self._call(
                        host, MODULE_PKG, "GraphService", "GetGraph", req, mpb.GetGraphResponse
                    )
                    commits = list(resp.graph.commits)
                names = self._names(host, commits)
                for commit in commits:
                    if commit.module_id not in names:
                        raise InvalidContentError(f"GetGraph on {host}: a commit has no module")
                    info = self._commit_info(names[commit.module_id], commit, b4)
                    graph.commits[info.commit_id] = info
                    graph.deps.setdefault(info.commit_id, [])
                for edge in resp.graph.edges:
                    for node in (edge.from_node, edge.to_node) if b4 else ():
                        if node.registry != host:
                            raise _federated(host, node.registry)
                    src = _commit_id(edge.from_node.commit_id, host)
                    dst = _commit_id(edge.to_node.commit_id, host)
                    if src not in graph.commits or dst not in graph.commits:
                        raise InvalidContentError(
                            f"GetGraph on {host}: an edge names a commit the graph lacks"
                        )
                    if dst not in graph.deps[src]:
                        graph.deps[src].append(dst)
                # A graph holds one commit per module, so the requested modules name the roots.
                wanted = {r.module for _, r in batch}
                for info in graph.commits.values():
                    if info.module in wanted and info.commit_id not in graph.roots:
                        graph.roots.append(info.commit_id)
        return graph

    def _names(self, host: str, commits: Iterable[mpb.Commit]) -> dict[str, ModuleName]:
        module_ids = sorted({c.module_id for c in commits})
        modules: dict[str, mpb.Module] = {}
        for batch in _batches(module_ids):
            req = mpb.GetModulesRequest(module_refs=[mpb.ModuleRef(id=i) for i in batch])
            resp = self._call(
                host, MODULE_PKG, "ModuleService", "GetModules", req, mpb.GetModulesResponse
            )
            for module in resp.modules:
                modules[module.id] = module
        owner_ids = sorted({m.owner_id for m in modules.values()})
        owners: dict[str, str] = {}
        for batch in _batches(owner_ids):
            req = opb.GetOwnersRequest(owner_refs=[opb.OwnerRef(id=i) for i in batch])
            resp = self._call(
                host, OWNER_PKG, "OwnerService", "GetOwners", req, opb.GetOwnersResponse
            )
            for owner in resp.owners:
                which = owner.WhichOneof("value")
                value = owner.user if which == "user" else owner.organization
                owners[value.id] = value.name
        names: dict[str, ModuleName] = {}
        for module_id in module_ids:
            module = modules.get(module_id)
            if module is None or module.owner_id not in owners:
                raise InvalidContentError(f"{host}: the registry did not name module {module_id!r}")
            names[module_id] = _module_name(host, owners[module.owner_id], module.name)
        return names

    # -- DownloadService -----------------------------------------------------------------
    def download(self, commits: Sequence[CommitInfo], *, b4: bool = False) -> list[ModuleContent]:
        """Download the files of each commit (by commit id), in order; every path and size is
        checked before anything is stored, published or written. With ``b4`` (v1beta1), the
        commits carry b4 digests and a v1 module's own buf.yaml/buf.lock come along."""
        out: list[ModuleContent | None] = [None] * len(commits)
        by_host: dict[str, list[tuple[int, CommitInfo]]] = {}
        for index, commit in enumerate(commits):
            by_host.setdefault(commit.module.registry, []).append((index, commit))
        for host, indexed in by_host.items():
            for batch in _batches(indexed):
                for index, content in self._download_batch(host, batch, b4):
                    out[index] = content
        return [c for c in out if c is not None]

    def _download_batch(
        self, host: str, batch: Sequence[tuple[int, CommitInfo]], b4: bool
    ) -> list[tuple[int, ModuleContent]]:
        pkg, pb = (MODULE_V1BETA1_PKG, bpb) if b4 else (MODULE_PKG, mpb)
        req = pb.DownloadRequest(
            values=[
                pb.DownloadRequest.Value(resource_ref=pb.ResourceRef(id=c.commit_id))
                for _, c in batch
            ]
        )
        if b4:
            req.digest_type = bpb.DIGEST_TYPE_B4
        try:
            resp = self._call(host, pkg, "DownloadService", "Download", req, pb.DownloadResponse)
        except ContentTooLargeError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2  # a large answer: ask for fewer modules at a time
            return self._download_batch(host, batch[:half], b4) + self._download_batch(
                host, batch[half:], b4
            )
        if len(resp.contents) != len(batch):
            raise InvalidContentError(
                f"Download on {host}: asked for {len(batch)} commits, got {len(resp.contents)}"
            )
        lim = limits()
        out = []
        for (index, commit), content in zip(batch, resp.contents, strict=True):
            where = f"Download on {host}: {commit.module}:{commit.commit_id}"
            got = _commit_id(content.commit.id, host)
            if got != commit.commit_id:
                raise InvalidContentError(f"{where}: the registry sent commit {got} instead")
            paths = [f.path for f in content.files]
            validate_file_set(paths, where)
            if len(paths) > lim.max_module_files:
                raise ContentTooLargeError(f"{where}: more than {lim.max_module_files} files")
            files = {f.path: bytes(f.content) for f in content.files}
            if sum(map(len, files.values())) > lim.max_module_bytes:
                raise ContentTooLargeError(
                    f"{where}: the module's files exceed {lim.max_module_bytes} bytes"
                    " (raise --max-module-mb if this module is really that large)"
                )
            v1_files = {}
            if b4:
                digest = _digest_from_proto(content.commit.digest, where, b4=True)
                commit = replace(commit, digest=digest)
                for name, field_ in _V1_FIELDS:
                    if content.HasField(field_):
                        v1_files[name] = bytes(getattr(content, field_).content)
                        if len(v1_files[name]) > MAX_V1_FILE_BYTES:
                            raise ContentTooLargeError(f"{where}: a v1 {name} over 1 MiB")
            out.append((index, ModuleContent(commit, files, v1_files)))
        return out

    def download_graph(self, graph: ModuleGraph) -> dict[str, ModuleContent]:
        """Download every commit of ``graph`` and verify each one's b5 digest."""
        commits = list(graph.commits.values())
        contents = self.download(commits)
        for content in contents:
            deps = [d.digest for d in graph.transitive_deps(content.commit.commit_id)]
            verify_content(content, deps)
        return {c.commit.commit_id: c for c in contents}


def verify_content(content: ModuleContent, dep_digests: Iterable[Digest]) -> None:
    actual = b5_from_contents(content.files, dep_digests)
    if actual != content.commit.digest:
        raise DigestMismatchError(
            f"digest verification failed for {content.commit.module}:{content.commit.commit_id}:"
            f" expected {content.commit.digest}, got {actual}"
        )


def _federated(host: str, other: str) -> InvalidContentError:
    return InvalidContentError(
        f"{host}: the graph holds modules of another registry ({other!r}); federated graphs"
        " are not supported: fetch with that registry's buf.lock entries pinned instead"
    )


def _by_host(refs: Sequence[ModuleRef]) -> dict[str, list[tuple[int, ModuleRef]]]:
    out: dict[str, list[tuple[int, ModuleRef]]] = {}
    for index, ref in enumerate(refs):
        out.setdefault(ref.module.registry, []).append((index, ref))
    return out
