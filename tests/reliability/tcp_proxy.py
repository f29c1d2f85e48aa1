"""A loopback TCP proxy in front of a database or an API server: while `down`, every connection is
accepted and closed at once (the client sees the server hang up, as during a restart or a broken
network path) and counted in `refused`; `up()` makes it forward every new connection to the target.
`partition()` is a network partition: nothing gets through any more, old connections or new, and
nothing is closed either (requests hang, as behind a black hole)."""

from __future__ import annotations

import socket
import threading

from tests.support.postgres import free_port


class Proxy:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self.connections = 0
        self.refused = 0
        self.down = True
        self.partitioned = threading.Event()

    def up(self) -> None:
        self.down = False

    def partition(self) -> None:
        self.partitioned.set()

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self._server:
            self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down:
                self.refused += 1
                client.close()
                continue
            if self.partitioned.is_set():
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.partitioned.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
