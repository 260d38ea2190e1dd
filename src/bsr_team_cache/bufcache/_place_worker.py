"""The process that writes buf's cache entries for placer.py.

It reads entries from stdin (each a 4-byte length and the ``marshal`` of write_module's
arguments) until stdin ends, writes each with ``write_module`` as the fetch itself would, and
answers each on stdout: the entry's number and 1 if it is in place, 0 if not (the fetch then
writes it itself, and says what went wrong). It is our own process fed by our own: marshal
reads only what the fetch wrote, after the fetch checked every file."""

from __future__ import annotations

import marshal
import os
import struct

FRAME = struct.Struct("<II")  # the length of an entry's marshal, and the entry's number
ANSWER = struct.Struct("<IB")  # entry number, in place (1) or not (0)
READY = 0xFFFFFFFF  # the number of the first answer: its code is loaded


def main() -> None:
    from pathlib import Path

    from bsr_team_cache.bufcache.v3 import write_module
    from bsr_team_cache.domain.digest import parse_digest
    from bsr_team_cache.domain.moduleref import ModuleName

    os.write(1, ANSWER.pack(READY, 1))
    jobs = open(0, "rb", buffering=1 << 16, closefd=False)  # noqa: SIM115 - until stdin ends
    while True:
        head = jobs.read(FRAME.size)
        if len(head) < FRAME.size:
            break  # the fetch has sent everything (or is gone)
        size, number = FRAME.unpack(head)
        body = jobs.read(size)
        if len(body) < size:
            break
        cache_dir, name, commit, files, deps, digest_type, v1_files = marshal.loads(body)
        try:
            write_module(
                Path(cache_dir),
                ModuleName(*name),
                commit,
                files,
                [(ModuleName(*n), c, parse_digest(d)) for n, c, d in deps],
                digest_type=digest_type,
                v1_files=v1_files,
            )
            placed = 1
        except Exception:  # the fetch writes it itself, and raises what it meets
            placed = 0
        os.write(1, ANSWER.pack(number, placed))


def run() -> None:
    """The process's whole life (placer.py starts it with ``python -S -P -c``)."""
    try:
        main()
    except BaseException:  # whatever it is, the fetch writes what is left
        os._exit(1)
    # No interpreter shutdown (~5 ms of a short process): nothing is buffered, every entry
    # is renamed into place or not at all.
    os._exit(0)
