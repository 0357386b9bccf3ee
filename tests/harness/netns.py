"""TCP relays between this machine's network namespace and a test host's own one.

A docker-capable fresh host has its own network namespace, so the Docker engine inside (its
docker0 bridge, iptables rules, published ports) never touches this machine's network or another
engine's. The test process bridges the two namespaces for just two things:

- SSH in: 127.0.0.1:PORT here -> 127.0.0.1:22 inside the host (`tcp_forward`);
- out: an HTTP proxy on 127.0.0.1:3142 inside the host, whose connections are opened from
  this machine's namespace (`http_proxy`): apt is configured to use it, and SSH sessions get
  http_proxy/https_proxy (no_proxy for loopback), so apt, pip and curl inside work as on a
  networked host, and reach services this machine serves on its own 127.0.0.1.

Sockets are created in a namespace by a short-lived thread that `setns()`s first (a socket keeps
the namespace it was created in).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

Handler = Callable[[socket.socket], tuple[socket.socket, bytes]]


def in_netns(netns: str | None, make: Callable[[], object]):
    """Call `make()` in a thread that has joined the network namespace file `netns`."""
    if netns is None:
        return make()
    outcome: dict = {}

    def target() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns({netns}): {os.strerror(error)}")
            finally:
                os.close(fd)
            outcome["value"] = make()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="netns-socket")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def listen(netns: str | None, address: str = "127.0.0.1", port: int = 0) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
        return sock

    return in_netns(netns, make)


def connect(netns: str | None, address: tuple[str, int], timeout: float = 30) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.create_connection(address, timeout=timeout)
        sock.settimeout(None)
        return sock

    return in_netns(netns, make)


class Relay:
    """Accept on `listener`; for each client, `handler` opens the upstream; pump both ways."""

    def __init__(self, listener: socket.socket, handler: Handler, name: str):
        self.listener = listener
        self.handler = handler
        self.port = listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            upstream, first = self.handler(client)
        except Exception:
            self._untrack(client)
            return
        self._track(upstream)
        try:
            if first:
                upstream.sendall(first)
        except OSError:
            self._untrack(client, upstream)
            return
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        self._untrack(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(262144)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                sock.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


def tcp_forward(listen_netns: str | None, listen_port: int, target_netns: str | None,
                target: tuple[str, int], name: str = "tcp-forward") -> Relay:
    """127.0.0.1:`listen_port` in one namespace -> `target` in another (port 0: any free)."""

    def handler(client: socket.socket) -> tuple[socket.socket, bytes]:
        try:
            return connect(target_netns, target, timeout=10), b""
        except OSError:
            client.close()
            raise

    return Relay(listen(listen_netns, port=listen_port), handler, name)


def connect_with_retries(address: tuple[str, int], attempts: int = 4,
                         delay: float = 0.5) -> socket.socket:
    """`connect` from this namespace, trying again on a refused or failed connection (a
    mirror behind this machine's egress sometimes drops one of many connections at once)."""
    for attempt in range(attempts):
        try:
            return connect(None, address)
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * 2 ** attempt)
    raise AssertionError("unreachable")


def http_proxy(listen_netns: str | None, listen_port: int = 3142,
               name: str = "http-proxy") -> Relay:
    """An HTTP forward proxy listening in `listen_netns`, connecting from this process's
    namespace: plain requests (one per connection, `Connection: close`) and CONNECT tunnels."""

    def handler(client: socket.socket) -> tuple[socket.socket, bytes]:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk or len(head) > 65536:
                client.close()
                raise ConnectionError("no request")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
            if method == b"CONNECT":  # a tunnel (https): host:port
                url = urlsplit("//" + target.decode("latin-1"))
                upstream = connect_with_retries((url.hostname, url.port or 443))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                return upstream, rest
            url = urlsplit(target.decode("latin-1"))
            if url.scheme != "http" or not url.hostname:
                raise ValueError(target)
            upstream = connect_with_retries((url.hostname, url.port or 80))
        except (ValueError, OSError):
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
            client.close()
            raise
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        hop = (b"connection:", b"proxy-connection:", b"keep-alive:")
        headers = [line for line in lines[1:] if not line.lower().startswith(hop)]
        request = b"\r\n".join([b" ".join([method, path.encode("latin-1"), version]),
                                *headers, b"Connection: close"])
        return upstream, request + b"\r\n\r\n" + rest

    return Relay(listen(listen_netns, port=listen_port), handler, name)
