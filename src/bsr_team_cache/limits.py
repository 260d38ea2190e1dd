"""Bounds on what the team registry and the BSR can make this machine hold or wait for.

Everything that arrives from either is read against a cap, where it is read: a registry or a
BSR that sends more is cut off and reported, never held in memory without bound. The process's
limits are set once (the CLI does it from its settings); library callers may call ``configure``.
"""

from __future__ import annotations

MiB = 1 << 20
# Proto text compresses 4-10x (gzip; a little more with zstd); long runs of zeros (a bomb)
# ~1000x. Past the floor, decompressed output more than INFLATE_RATIO times the input read so
# far is refused.
INFLATE_RATIO = 200
INFLATE_RATIO_FLOOR = 16 * MiB
# A v1 module's own buf.yaml or buf.lock (kept for b4 entries of buf's cache): a few KB in
# practice.
MAX_V1_FILE_BYTES = 1 * MiB


class Limits:
    """The bounds, as class defaults; ``replace`` makes a changed copy. (A plain class: it is
    made at every start-up, and a dataclass would compile its methods each time.)"""

    # The files of one module, decompressed. googleapis' whole tree is ~63 MB; the BSR's
    # googleapis module a few MB. Layers (compressed) are held to the same bound.
    max_module_bytes: int = 256 * MiB
    # Files in one module (googleapis' whole tree has ~7,200).
    max_module_files: int = 100_000
    # Manifests, configs and JSON documents: registries refuse manifests above 4 MiB.
    max_document_bytes: int = 4 * MiB
    # One Connect response. Bodies past SPILL_BYTES go to a temporary file while they arrive,
    # so an endless body costs disk up to this bound, not memory.
    max_response_bytes: int = 512 * MiB
    # A transfer slower than low_speed_bytes over low_speed_seconds is abandoned (git's
    # http.lowSpeedLimit/lowSpeedTime), so a trickling server cannot hold a fetch.
    low_speed_bytes: int = 1024
    low_speed_seconds: float = 30.0
    # One request, from sending it to the last byte of the answer.
    request_seconds: float = 600.0
    # One command (a fetch, a sync): the CLI's --timeout.
    command_seconds: float = 900.0

    def replace(self, **changes: float | int) -> Limits:
        import copy  # here: the CLI imports this module at every start-up

        changed = copy.copy(self)
        for name, value in changes.items():
            if name.startswith("_") or not hasattr(Limits, name) or callable(getattr(Limits, name)):
                raise TypeError(f"unknown limit {name!r}")
            setattr(changed, name, value)
        return changed


_current = Limits()


def limits() -> Limits:
    return _current


def configure(**changes: float | int) -> Limits:
    """Set some limits for this process (e.g. ``configure(max_module_bytes=512 * MiB)``)."""
    global _current
    _current = _current.replace(**changes)
    return _current
