"""The HTTP(S) server behind `edge-sdk serve`: the page, LiteRT.js and one bundle, plus two small JSON endpoints.

Only the URL paths listed by `site.site_files` exist (no directory listing, no path from the request ever touches
the file system), `GET /api/config` tells the page the budget and whether to report, and `POST /api/frames`
takes its timings. It binds to loopback unless a host is given.
"""
from __future__ import annotations

import json
import mimetypes
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edge_sdk.serve.report import Collector

MAX_POST = 1 << 20
TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".tflite": "application/octet-stream",
         ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
         ".css": "text/css"}


class PageServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], files: dict[str, Path], config: dict[str, Any],
                 collector: Collector) -> None:
        self.files = files
        self.config = config
        self.collector = collector
        super().__init__(addr, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A phone that drops the connection or rejects the self-signed certificate is not an error here."""


class Handler(BaseHTTPRequestHandler):
    server: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the terminal shows the per-device lines, not an access log."""

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        # cross-origin isolation: performance.now() at 5 us instead of 100 us resolution (the page's latencies)
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        if path == "api/config":
            return self._json(self.server.config)
        f = self.server.files.get(path)
        if f is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        ctype = TYPES.get(f.suffix) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, f.read_bytes(), ctype)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/api/frames":
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 < n <= MAX_POST:
            return self._json({"error": "bad length"}, HTTPStatus.BAD_REQUEST)
        try:
            payload = json.loads(self.rfile.read(n))
        except (ValueError, UnicodeDecodeError):
            return self._json({"error": "not JSON"}, HTTPStatus.BAD_REQUEST)
        if not isinstance(payload, dict):
            return self._json({"error": "not an object"}, HTTPStatus.BAD_REQUEST)
        done = self.server.collector.add(payload, self.client_address[0])
        self._json({"done": done})


def make_server(host: str, port: int, files: dict[str, Path], config: dict[str, Any], collector: Collector,
                tls: tuple[Path, Path] | None = None) -> PageServer:
    """Bind (port 0 = any free port) and wrap in TLS when a (cert, key) pair is given."""
    srv = PageServer((host, port), files, config, collector)
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        # handshake in the request thread, so one slow or refusing client never blocks accept()
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    return srv


def serve_in_thread(srv: PageServer) -> threading.Thread:
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    return t
