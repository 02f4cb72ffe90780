"""A scripted HTTP server on 127.0.0.1 (ephemeral port) for socket-level provider tests.

Each request to the server takes the next scripted Reply. A reply writes its status
and headers, then its body as real HTTP/1.1 chunks exactly as split in ``parts``:
bytes are written and flushed one part at a time, a float pauses that many seconds,
and DISCONNECT drops the connection on the spot (no terminating chunk).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DISCONNECT = object()


@dataclass
class Reply:
    status: int = 200
    parts: list = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class LoopbackServer:
    def __init__(self, *replies: Reply) -> None:
        self.replies: list[Reply] = list(replies)
        self.requests: list[SeenRequest] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer._lock:
                    outer.requests.append(SeenRequest(self.command, self.path, dict(self.headers.items()), body))
                    reply = outer.replies.pop(0) if outer.replies else Reply(500, [b"no reply scripted"], content_type="text/plain")
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("transfer-encoding", "chunked")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for part in reply.parts:
                        if part is DISCONNECT:
                            with outer._lock:
                                outer.disconnects += 1
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        if isinstance(part, (int, float)):
                            time.sleep(part)
                            continue
                        if part:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with outer._lock:
                        outer.disconnects += 1
                    self.close_connection = True

            do_POST = _serve
            do_GET = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
