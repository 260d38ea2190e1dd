"""The team's event log in the registry: each machine ships its new events as immutable,
content-addressed chunks, and every reader merges the chunks it has not seen.

  <ns>teams/<team>/usage-events:<member>.<host hash>   one manifest per machine
    layers: chunks, oldest first (gzip of a columnar JSON document, see ``encode_chunk``)

A machine appends a chunk per sync. Past ``COMPACT_ABOVE`` layers, the two adjacent chunks with
the fewest events are merged (dropping events older than ``RETENTION``) until ``COMPACT_TO``
remain: a chunk is rewritten about log2(n) times over its life, and a machine's manifest stays
small. A merged chunk names the chunks it replaces, so a reader that merged those skips it.

Chunks come from anyone with push rights: each is bounded (compressed and inflated size,
events), every string and number is validated as ``usage import`` validates a line, and a bad
chunk is a warning, never merged in part.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bsr_team_cache._threads import ContextThreadPool
from bsr_team_cache.errors import (
    BSRTeamCacheError,
    ConflictError,
    InvalidContentError,
    RegistryError,
)
from bsr_team_cache.oci.base import (
    OCI_MANIFEST,
    RegistryBackend,
    gunzip_within,
    manifest_annotations,
    parse_descriptor,
    read_typed_manifest,
    sha256_digest,
)
from bsr_team_cache.oci.documents import EMPTY_CONFIG, artifact_manifest
from bsr_team_cache.oci.url import in_namespace
from bsr_team_cache.usage.events import (
    MAX_BYTES,
    MAX_PROJECT,
    MAX_SECONDS,
    MAX_TIME,
    MIN_TIME,
    OPERATIONS,
    TIERS,
    EventError,
    UsageEvent,
    check_commit,
    check_module,
    check_text,
)
from bsr_team_cache.usage.log import MERGED, EventColumns, EventLog

ARTIFACT_TYPE = "application/vnd.bsr-team-cache.usage-events.v1"
CHUNK_MEDIA_TYPE = "application/vnd.bsr-team-cache.usage-chunk.v1+json+gzip"
ANN_EVENTS = "org.bsr-team-cache.events"
ANN_REPLACES = "org.bsr-team-cache.replaces"
ANN_MEMBER = "org.bsr-team-cache.member"
ANN_HOST = "org.bsr-team-cache.host"
ANN_STORE_BYTES = "org.bsr-team-cache.store-bytes"
ANN_UPDATED = "org.bsr-team-cache.updated"

CHUNK_EVENTS = 250_000  # events per chunk a sync writes (a long-offline machine: several)
MAX_CHUNK_EVENTS = 1_000_000  # what a reader accepts in one chunk (compactions included)
MAX_CHUNK_BYTES = 64 << 20  # compressed
MAX_INFLATED_BYTES = 512 << 20
MAX_LAYERS = 64
MAX_MERGE_EVENTS = 5_000_000  # new events one merge takes in (the rest: the next one)
MAX_STORE_BYTES = 1 << 50
# Chunks are JSON of small integers: gzip makes them 5-10x smaller. Past the floor, inflating
# more than INFLATE_RATIO times the compressed size is refused (a bomb), before parsing.
INFLATE_RATIO = 50
INFLATE_FLOOR = 4 << 20
MAX_TAGS = 10_000
COMPACT_ABOVE = 16
COMPACT_TO = 8
RETENTION = 400 * 24 * 3600.0  # a year and a season: trends compare with last year's month
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# Text columns, and what each string used there must be.
_TEXT = ("team", "member", "host", "build", "fetch", "project", "module", "commit", "bundle")
_US = 1_000_000
_COLUMNS = {*_TEXT, "time_us", "tier", "operation", "bytes", "seconds_us", "fetch_seconds_us"}
# Events are ordered by time, then these, then tier and operation: a total order.
_ORDER_TEXT = ("module", "commit", "member", "host", "build", "fetch")


def usage_repository(team: str, namespace: str = "") -> str:
    return in_namespace(namespace, f"teams/{team}/usage-events")


def machine_tag(member: str, host: str) -> str:
    """One tag per member and machine: two machines never rewrite each other's manifest."""
    safe = re.sub(r"[^a-z0-9_.-]+", "-", member.lower()).strip(".-")[:80] or "member"
    digest = hashlib.sha256(f"{member}\0{host}".encode()).hexdigest()[:12]
    return f"{safe}.{digest}"


# -- chunk encoding ------------------------------------------------------------------------
def encode_chunk(events: EventColumns | list[UsageEvent]) -> bytes:
    """gzip (deterministic: no name, no time) of ``{"version": 1, "count": n, "strings": [...],
    "columns": {...}}``: events in a total order (time first), texts as indexes into
    ``strings``, time as microsecond deltas, seconds as microseconds. Same events, same bytes,
    same digest."""
    if not isinstance(events, EventColumns):
        events = EventColumns.from_events(events)
    s, text = events.strings, events.text
    named = [map(s.__getitem__, text[_TEXT.index(n)]) for n in _ORDER_TEXT]
    keys = list(zip(events.time, *named, events.tier, events.operation, strict=True))
    ordered = events.select(sorted(range(len(events)), key=keys.__getitem__))
    # The strings used, sorted: the same events give the same table whatever their source.
    used = sorted({ordered.strings[k] for column in ordered.text for k in set(column)})
    index = {text: i for i, text in enumerate(used)}
    renumber = [index.get(text, -1) for text in ordered.strings]
    columns: dict[str, list[int]] = {
        name: list(map(renumber.__getitem__, column))
        for name, column in zip(_TEXT, ordered.text, strict=True)
    }
    micros = [round(t * _US) for t in ordered.time]
    columns["time_us"] = [t - p for t, p in zip(micros, [0, *micros[:-1]], strict=True)]
    columns["tier"] = ordered.tier
    columns["operation"] = ordered.operation
    columns["bytes"] = ordered.bytes
    columns["seconds_us"] = [round(v * _US) for v in ordered.seconds]
    columns["fetch_seconds_us"] = [round(v * _US) for v in ordered.fetch_seconds]
    document = {"version": 1, "count": len(ordered), "strings": used, "columns": columns}
    raw = json.dumps(document, separators=(",", ":")).encode()
    out = io.BytesIO()
    # Level 4: within 7% of level 6's size at a third of its time (sync ships in the build).
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=4, mtime=0) as f:
        f.write(raw)
    return out.getvalue()


def inflate(data: bytes, where: str) -> bytes:
    """A chunk's gzip, bounded: at most 50x its size (4 MiB floor, 512 MiB cap)."""
    limit = min(MAX_INFLATED_BYTES, max(INFLATE_FLOOR, INFLATE_RATIO * len(data)))
    too_large = (
        f"inflates past {limit >> 20} MiB ({INFLATE_RATIO}x its size or"
        f" {MAX_INFLATED_BYTES >> 20} MiB)"
    )
    return gunzip_within(data, limit, where, too_large)


def decode_chunk(data: bytes, where: str) -> EventColumns:
    """The events of a chunk, every one valid, or InvalidContentError (nothing in part)."""
    if len(data) > MAX_CHUNK_BYTES:
        raise InvalidContentError(f"{where}: larger than {MAX_CHUNK_BYTES >> 20} MiB")
    try:
        document = json.loads(inflate(data, where))
    except (ValueError, RecursionError) as exc:
        raise InvalidContentError(f"{where}: not a JSON document ({exc})") from None
    try:
        return _columns(document)
    except EventError as exc:
        raise InvalidContentError(f"{where}: {exc}") from None


def _ints(columns: dict, name: str, count: int, low: int, high: int) -> list[int]:
    column = columns.get(name)
    if not isinstance(column, list) or len(column) != count:
        raise EventError(f"columns.{name}", f"expected a list of {count} integers")
    if not set(map(type, column)) <= {int}:  # (not bool, not float)
        raise EventError(f"columns.{name}", "expected integers")
    if column and (min(column) < low or max(column) > high):
        raise EventError(f"columns.{name}", f"values outside {low}..{high}")
    return column


def _columns(document: object) -> EventColumns:
    if not isinstance(document, dict) or document.get("version") != 1:
        raise EventError("version", "expected a version 1 chunk")
    count, strings, columns = (document.get(k) for k in ("count", "strings", "columns"))
    if type(count) is not int or not 0 <= count <= MAX_CHUNK_EVENTS:
        raise EventError("count", f"expected an integer from 0 to {MAX_CHUNK_EVENTS}")
    if not isinstance(strings, list) or not isinstance(columns, dict):
        raise EventError("strings", "expected a list of strings and a columns object")
    if set(document) != {"version", "count", "strings", "columns"}:
        raise EventError("chunk", "unknown or missing top-level fields")
    if set(columns) != _COLUMNS:
        raise EventError("columns", f"expected exactly {', '.join(sorted(_COLUMNS))}")
    for i, text in enumerate(strings):
        check_text(text, f"strings[{i}]", limit=MAX_PROJECT)
    top = len(strings) - 1
    texts = {name: _ints(columns, name, count, 0, top) for name in _TEXT}
    # Each string as what it is used for (a module name, a commit, ...), once per string.
    for name, check in (("module", check_module), ("commit", check_commit)):
        for i in set(texts[name]):
            check(strings[i], f"{name} {strings[i]!r}")
    for name in ("member", "build"):
        if any(not strings[i] for i in set(texts[name])):
            raise EventError(name, "must not be empty")
    for name in ("team", "member", "host", "build", "fetch", "bundle"):
        for i in set(texts[name]):
            check_text(strings[i], name)
    # Each string once, and each one used: a chunk cannot make readers keep text for nothing.
    used = set().union(*(set(column) for column in texts.values()))
    if len(set(strings)) != len(strings) or len(used) != len(strings):
        raise EventError("strings", "every string must be distinct and used by an event")
    deltas = _ints(columns, "time_us", count, 0, round(MAX_TIME * _US))
    times = [t / _US for t in itertools.accumulate(deltas)]
    if times and not (times[0] >= MIN_TIME and times[-1] <= MAX_TIME):
        raise EventError("columns.time_us", "a time outside the years 2000 to 2200")
    return EventColumns(
        strings,
        [texts[name] for name in _TEXT],
        times,
        _ints(columns, "tier", count, 0, len(TIERS) - 1),
        _ints(columns, "operation", count, 0, len(OPERATIONS) - 1),
        _ints(columns, "bytes", count, 0, MAX_BYTES),
        [v / _US for v in _ints(columns, "seconds_us", count, 0, round(MAX_SECONDS * _US))],
        [v / _US for v in _ints(columns, "fetch_seconds_us", count, 0, round(MAX_SECONDS * _US))],
    )


# -- a machine's manifest ------------------------------------------------------------------
@dataclass
class Layer:
    digest: str
    size: int
    events: int
    replaces: tuple[str, ...] = ()
    media_type: str = CHUNK_MEDIA_TYPE

    def descriptor(self) -> dict:
        annotations = {ANN_EVENTS: str(self.events)}
        if self.replaces:
            annotations[ANN_REPLACES] = ",".join(self.replaces)
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": annotations,
        }


@dataclass
class MachineLog:
    tag: str
    layers: list[Layer]
    annotations: dict[str, str]
    digest: str | None  # of the manifest, for a conditional replace


def machine_manifest(
    layers: list[Layer], annotations: dict[str, str], artifact_type: str = ARTIFACT_TYPE
) -> bytes:
    """A machine's manifest: its chunks as layers (also the audit log's, another type)."""
    return artifact_manifest(artifact_type, [layer.descriptor() for layer in layers], annotations)


def read_machine_log(
    registry: RegistryBackend,
    repo: str,
    tag: str,
    artifact_type: str = ARTIFACT_TYPE,
    media_type: str = CHUNK_MEDIA_TYPE,
) -> MachineLog | None:
    """A machine's manifest, every field checked (InvalidContentError), or None."""
    found = read_typed_manifest(registry, repo, tag, artifact_type)
    if found is None:
        return None
    manifest, where, digest = found
    raw_layers = manifest["layers"]
    if len(raw_layers) > MAX_LAYERS:
        raise InvalidContentError(f"{where}: more than {MAX_LAYERS} chunks")
    layers = []
    for raw in raw_layers:
        d = parse_descriptor(raw, where, media_types=(media_type,), max_size=MAX_CHUNK_BYTES)
        notes = raw.get("annotations") if isinstance(raw.get("annotations"), dict) else {}
        events = _bounded_int(str(notes.get(ANN_EVENTS, "")), MAX_CHUNK_EVENTS)
        replaces = tuple(r for r in str(notes.get(ANN_REPLACES, "")).split(",") if r)
        if events is None:
            raise InvalidContentError(f"{where}: chunk {d.digest} has no valid event count")
        if len(replaces) > 4 * MAX_LAYERS or not all(_is_digest(r) for r in replaces):
            raise InvalidContentError(f"{where}: chunk {d.digest} names invalid replaced chunks")
        layers.append(Layer(d.digest, d.size, events, replaces, media_type))
    return MachineLog(tag, layers, manifest_annotations(manifest, where), digest)


def _is_digest(text: str) -> bool:
    return re.fullmatch(r"sha256:[0-9a-f]{64}", text) is not None


# -- shipping --------------------------------------------------------------------------------
@dataclass
class ShipReport:
    events: int = 0
    chunks: int = 0
    compacted: int = 0
    warnings: list[str] = field(default_factory=list)


def ship(
    log: EventLog,
    registry: RegistryBackend,
    repo: str,
    *,
    team: str,
    member: str,
    host: str,
    store_bytes: int,
    now: Callable[[], float] = time.time,
) -> ShipReport:
    """Push this machine's events of ``team`` not shipped yet (recorded or imported here),
    then compact. Resumes after the last shipped event, per registry and repository."""
    tag = machine_tag(member, host)
    mark = f"shipped:{registry.describe()}/{repo}:{tag}"
    shipped = int(log.get_state(mark) or 0)
    report = ShipReport()
    new_layers: list[Layer] = []
    last = shipped
    team_id = log.string_id(team)
    while team_id is not None:
        events, seq = log.own_after(last, CHUNK_EVENTS, team=team)
        if seq == last:
            break
        last = seq
        if len(events):
            data = encode_chunk(events)
            digest = sha256_digest(data)
            if not registry.blob_exists(repo, digest):
                registry.push_blob(repo, data, digest)
            new_layers.append(Layer(digest, len(data), len(events)))
            report.events += len(events)
    annotations = {
        ANN_MEMBER: member,
        ANN_HOST: hashlib.sha256(host.encode()).hexdigest()[:12],
        ANN_STORE_BYTES: str(store_bytes),
        ANN_UPDATED: str(int(now())),
    }
    for _attempt in range(8):
        current = _own_log(registry, repo, tag)
        layers = current.layers if current else []
        seen = {layer.digest for layer in layers}
        layers = layers + [layer for layer in new_layers if layer.digest not in seen]
        layers, compacted = _compact(registry, repo, layers, now(), report.warnings)
        if not registry.blob_exists(repo, sha256_digest(EMPTY_CONFIG)):
            registry.push_blob(repo, EMPTY_CONFIG, sha256_digest(EMPTY_CONFIG))
        try:
            registry.replace_manifest(
                repo,
                tag,
                machine_manifest(layers, annotations),
                OCI_MANIFEST,
                current.digest if current else None,
            )
        except ConflictError:
            continue  # another run on this machine wrote meanwhile: on top of theirs
        report.chunks = len(new_layers)
        report.compacted = compacted
        log.set_state(mark, str(last))  # (merge skips this machine's own tag)
        return report
    raise ConflictError(f"{registry.describe()}/{repo}:{tag} kept changing; sync again")


def _own_log(registry: RegistryBackend, repo: str, tag: str) -> MachineLog | None:
    try:
        return read_machine_log(registry, repo, tag)
    except InvalidContentError:
        # Our own tag, unreadable (written by a broken client, or by someone else): start it
        # again rather than never shipping.
        raw = registry.read_manifest(repo, tag)
        return MachineLog(tag, [], {}, sha256_digest(raw[0]) if raw else None)


def _compact(
    registry: RegistryBackend, repo: str, layers: list[Layer], now: float, warnings: list[str]
) -> tuple[list[Layer], int]:
    """Merge adjacent chunks, the pair with the fewest events first, while more than
    ``COMPACT_TO`` remain, never into a chunk a reader would refuse as too large. A chunk of
    this machine's tag that does not read back (someone else wrote the tag) is dropped."""
    merges = 0
    if len(layers) <= COMPACT_ABOVE:
        return layers, 0
    layers = list(layers)
    where = f"{registry.describe()}/{repo}"

    def read(layer: Layer) -> list[UsageEvent] | None:
        try:
            data = registry.read_blob(repo, layer.digest, layer.size)
            return decode_chunk(data, f"{where} chunk {layer.digest}").events()
        except InvalidContentError as exc:
            warnings.append(f"usage chunk dropped from this machine's tag: {exc}")
            return None

    while len(layers) > COMPACT_TO:
        pairs = [
            k
            for k in range(len(layers) - 1)
            if layers[k].events + layers[k + 1].events <= MAX_CHUNK_EVENTS // 2
        ]
        if not pairs:
            break  # every chunk is large: a reader could not take them merged
        i = min(pairs, key=lambda k: layers[k].events + layers[k + 1].events)
        a, b = layers[i], layers[i + 1]
        parts = [read(a), read(b)]
        events = [e for part in parts if part for e in part if e.time >= now - RETENTION]
        unique = list({e.event_id(): e for e in events}.values())
        data = encode_chunk(unique)
        digest = sha256_digest(data)
        if not registry.blob_exists(repo, digest):
            registry.push_blob(repo, data, digest)
        replaces = tuple(x.digest for x, part in zip((a, b), parts, strict=True) if part)
        layers[i : i + 2] = [Layer(digest, len(data), len(unique), replaces)]
        merges += 1
    return layers, merges


# -- merging the team's chunks ---------------------------------------------------------------
@dataclass
class MergeReport:
    machines: int = 0
    chunks: int = 0
    events: int = 0
    skipped: int = 0  # compacted chunks whose parts were merged already
    warnings: list[str] = field(default_factory=list)
    store_bytes: dict[str, int] = field(default_factory=dict)  # tag -> its store's bytes


def unseen_layers(
    registry: RegistryBackend,
    repo: str,
    *,
    own_tag: str,
    seen: set[tuple[str, str]],
    warnings: list[str],
    what: str,
    artifact_type: str = ARTIFACT_TYPE,
    media_type: str = CHUNK_MEDIA_TYPE,
    parallel: int = 4,
    on_machine: Callable[[MachineLog], None] | None = None,
) -> tuple[list[tuple[str, Layer]], list[tuple[str, Layer]]]:
    """The other machines' chunks not in ``seen`` ((tag, digest) pairs): (those to read, the
    compacted ones every part of which was merged from the same tag, which need no reading).
    An unreadable machine manifest is a warning. Chunks are remembered per machine tag: what
    one tag lists says nothing about another's."""
    tags = [t for t in registry.list_tags(repo)[:MAX_TAGS] if _TAG.fullmatch(t)]
    where = f"{registry.describe()}/{repo}"

    def read(tag: str) -> MachineLog | None:
        try:
            return read_machine_log(registry, repo, tag, artifact_type, media_type)
        except (InvalidContentError, RegistryError, ValueError) as exc:
            warnings.append(f"{what} {where}:{tag}: {exc}; skipped")
            return None

    wanted: list[tuple[str, Layer]] = []
    replaced: list[tuple[str, Layer]] = []
    with ContextThreadPool(max_workers=max(1, min(parallel, len(tags) or 1))) as pool:
        for machine in pool.map(read, tags):
            if machine is None:
                continue
            if on_machine is not None:
                on_machine(machine)
            if machine.tag == own_tag:
                continue
            for layer in machine.layers:
                if (machine.tag, layer.digest) in seen:
                    continue
                if layer.replaces and all((machine.tag, r) in seen for r in layer.replaces):
                    seen.add((machine.tag, layer.digest))
                    replaced.append((machine.tag, layer))
                else:
                    wanted.append((machine.tag, layer))
    return wanted, replaced


def read_layers(
    registry: RegistryBackend,
    repo: str,
    wanted: list[tuple[str, Layer]],
    *,
    warnings: list[str],
    what: str,
    parallel: int = 4,
) -> Iterator[tuple[str, Layer, bytes]]:
    """The chunks of ``wanted`` (verified), fetched in parallel and given one at a time, in
    order. One that could not be read (not there yet, a registry fault) is a warning and left
    out: it is tried again next time."""
    where = f"{registry.describe()}/{repo}"

    def pull(item: tuple[str, Layer]) -> tuple[str, Layer, bytes | None]:
        tag, layer = item
        try:
            return tag, layer, registry.read_blob(repo, layer.digest, layer.size)
        except (InvalidContentError, RegistryError) as exc:
            warnings.append(f"{what} {where}:{tag}: {exc}; tried again next time")
            return tag, layer, None

    with ContextThreadPool(max_workers=max(1, min(parallel, len(wanted) or 1))) as pool:
        for tag, layer, data in pool.map(pull, wanted):
            if data is not None:
                yield tag, layer, data


def merge(
    log: EventLog,
    registry: RegistryBackend,
    repo: str,
    *,
    team: str,
    own_tag: str,
    parallel: int = 4,
    now: float | None = None,
) -> MergeReport:
    """Merge every other machine's chunks this log has not seen. Unreadable manifests and bad
    chunks are warnings: a chunk that arrived whole (its digest verified) but does not decode
    is remembered and not read again; one that could not be read is tried again next time.

    Chunks are remembered per machine tag: what one tag lists says nothing about another's,
    and a compacted chunk is skipped unread only when every chunk it replaces was merged from
    that same tag."""
    now = time.time() if now is None else now
    report = MergeReport()
    seen = log.seen_chunks()

    def on_machine(machine: MachineLog) -> None:
        report.machines += 1
        size = _bounded_int(machine.annotations.get(ANN_STORE_BYTES, ""), MAX_STORE_BYTES)
        if size is not None:
            report.store_bytes[machine.tag] = size

    wanted, replaced = unseen_layers(
        registry, repo, own_tag=own_tag, seen=seen, warnings=report.warnings, what="team usage",
        parallel=parallel, on_machine=on_machine,
    )  # fmt: skip
    for tag, layer in replaced:
        log.mark_chunks(tag, [(layer.digest, layer.events)])
    report.skipped = len(replaced)
    where = f"{registry.describe()}/{repo}"
    budget = MAX_MERGE_EVENTS
    # Blobs arrive in parallel; chunks are decoded one at a time (bounded memory).
    for tag, layer, data in read_layers(
        registry, repo, wanted, warnings=report.warnings, what="team usage", parallel=parallel
    ):
        label = f"{where}:{tag} chunk {layer.digest}"
        try:
            events = decode_chunk(data, label)
        except InvalidContentError as exc:
            report.warnings.append(f"team usage: {exc}; skipped")
            log.mark_chunks(tag, [(layer.digest, -1)])  # content-addressed: bad for good
            continue
        events = _keep(events, team, now, tag, where, report)
        if len(events) > budget:
            report.warnings.append(
                f"team usage: more than {MAX_MERGE_EVENTS} new events at once; the rest"
                " is merged next time"
            )
            break
        budget -= len(events)
        report.events += log.add_columns(events, MERGED)
        log.mark_chunks(tag, [(layer.digest, layer.events)])
        report.chunks += 1
    return report


def _keep(
    events: EventColumns, team: str, now: float, tag: str, where: str, report: MergeReport
) -> EventColumns:
    """The chunk's events that belong here: of this team, within the retention, not from the
    future (a clock a day ahead at most)."""
    low, high = now - RETENTION, now + 86400
    strings = events.strings
    ours = [
        i
        for i, (k, t) in enumerate(zip(events.text[0], events.time, strict=True))
        if strings[k] == team and low <= t <= high
    ]
    if len(ours) < len(events):
        report.warnings.append(
            f"team usage {where}:{tag}: {len(events) - len(ours)} events of other teams, older"
            " than the retention or dated in the future ignored"
        )
        return events.select(ours)
    return events


def _bounded_int(text: str, high: int) -> int | None:
    """A decimal annotation (ASCII digits only) up to ``high``, else None."""
    if not re.fullmatch(r"[0-9]{1,16}", text):
        return None
    value = int(text)
    return value if value <= high else None


def safe_merge(log: EventLog, registry: RegistryBackend, repo: str, **kwargs) -> MergeReport:
    """``merge`` with a registry that does not answer as a warning (local data is used)."""
    try:
        return merge(log, registry, repo, **kwargs)
    except BSRTeamCacheError as exc:
        report = MergeReport()
        report.warnings.append(f"team usage not merged ({exc}); showing this machine's events")
        return report
