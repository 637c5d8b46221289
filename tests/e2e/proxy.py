"""A small round-robin TCP proxy: what a Service with several webhook endpoints does, on loopback.

Each accepted connection goes to the next backend in turn; a backend that refuses the connection
is skipped (as an endpoint leaves a Service when its pod dies). TLS passes through untouched, so
the API server still verifies the webhook's own certificate. `connections` counts per backend.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

BUFFER = 65536


@dataclass
class RoundRobinProxy:
    backends: list[int]  # ports on 127.0.0.1
    port: int = 0
    connections: Counter[int] = field(default_factory=Counter)
    forwarded_bytes: int = 0  # client -> backend, all connections: "is traffic still coming here?"
    _listener: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RoundRobinProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._closed.set()
        with self._lock:
            sockets = [s for s in (self._listener, *self._sockets) if s is not None]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def _spawn(self, target: object, *args: object) -> None:
        assert callable(target)
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        turn = itertools.cycle(range(len(self.backends)))
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect(next(turn))
            if upstream is None:
                client.close()  # no backend left: the caller sees a reset, as with no endpoints
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _connect(self, first: int) -> socket.socket | None:
        for offset in range(len(self.backends)):
            port = self.backends[(first + offset) % len(self.backends)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections[port] += 1
            return upstream
        return None

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while chunk := source.recv(BUFFER):
                if count:
                    with self._lock:
                        self.forwarded_bytes += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
