"""A latency- and bandwidth-shaping TCP proxy on loopback (for machines without netem): the demo
puts the BSR at internet distance with it, and the benchmarks their links.

Every byte forwarded in either direction arrives ``rtt/2`` later than it was read, and each
direction is one shared link of ``mbit`` Mbit/s (bytes queue behind earlier bytes, across all
connections, as on a real uplink). TLS passes through untouched.

    python -m bsr_team_cache.devnet --target 127.0.0.1:5000 --rtt-ms 20 --mbit 100
"""

from __future__ import annotations

import argparse
import collections
import socket
import threading
import time

_CHUNK = 64 * 1024


class Link:
    """One direction of the shaped link, shared by all connections."""

    def __init__(self, one_way_delay: float, bytes_per_second: float) -> None:
        self.delay = one_way_delay
        self.rate = bytes_per_second
        self._free_at = 0.0
        self._lock = threading.Lock()

    def schedule(self, size: int) -> float:
        """When a chunk of ``size`` bytes read now arrives at the far end."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + size / self.rate
            return self._free_at + self.delay


class _Pipe:
    """Reads from ``src`` and delivers into ``dst`` at the times the link decides."""

    def __init__(self, src: socket.socket, dst: socket.socket, link: Link) -> None:
        self.src, self.dst, self.link = src, dst, link
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(_CHUNK)
                if not data:
                    break
                due = self.link.schedule(len(data))
                with self.cond:
                    self.queue.append((due, data))
                    self.cond.notify()
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closed:
                        self.cond.wait()
                    if not self.queue and self.closed:
                        break
                    due, data = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class ShapingProxy:
    def __init__(
        self, target: tuple[str, int], *, rtt_ms: float = 20.0, mbit: float = 100.0
    ) -> None:
        self.target = target
        self.up = Link(rtt_ms / 2000, mbit * 1e6 / 8)
        self.down = Link(rtt_ms / 2000, mbit * 1e6 / 8)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False

    def start(self) -> ShapingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        # The TCP handshake itself costs one round trip on a real link.
        time.sleep(self.up.delay + self.down.delay)
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Pipe(client, upstream, self.up)
        _Pipe(upstream, client, self.down)

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = ShapingProxy((host, int(port)), rtt_ms=args.rtt_ms, mbit=args.mbit).start()
    print(f"127.0.0.1:{proxy.port} -> {args.target} ({args.rtt_ms} ms RTT, {args.mbit} Mbit/s)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
