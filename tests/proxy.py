"""A loopback TCP proxy a test can take down and bring back: outages without touching the real service.

The machine's PostgreSQL and Redis are shared, so an outage is simulated between the app and the
service: point the app at ``proxy.url_for(real_url)``; ``down()`` resets every open connection and
every new one (as a crashed server would), ``up()`` forwards again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), so the peer sees the connection die at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``down()`` / ``up()`` switch the service off and on."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._is_up = True
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy to the host and port of a service URL (postgresql://…, redis://…)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 0)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> TcpProxy:
        """Start accepting in a background thread."""
        self._thread.start()
        return self

    def down(self) -> None:
        """The service dies: every open connection is reset, and so is every new one until ``up()``."""
        with self._lock:
            self._is_up = False
            dying, self._open = self._open, set()
        for sock in dying:
            _reset(sock)

    def up(self) -> None:
        """The service is back: new connections are forwarded again."""
        with self._lock:
            self._is_up = True

    def stop(self) -> None:
        """Stop accepting and drop everything."""
        self._stopping.set()
        self.down()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(timeout=0.2):
                    continue
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    return  # closed by stop()
                self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        if self._is_up:
            with contextlib.suppress(OSError):
                upstream = socket.create_connection(self.target, timeout=5)
        with self._lock:  # checked again: down() may have run while we connected
            forwarding = self._is_up and upstream is not None
            if forwarding:
                self._open.update((client, upstream))
        if upstream is None or not forwarding:
            _reset(client)
            if upstream is not None:
                _reset(upstream)
            return
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way until either side closes; then close both."""
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass  # reset by down() or by a peer
        finally:
            with self._lock:
                self._open.difference_update((source, sink))
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()


@contextmanager
def proxied(url: str) -> Iterator[TcpProxy]:
    """A running proxy in front of the service at ``url``, stopped afterwards."""
    proxy = TcpProxy.for_url(url).start()
    try:
        yield proxy
    finally:
        proxy.stop()
