"""The viewer's HTTP side: the standard library's server, on 127.0.0.1 only, read-only.

Model output is hostile, so escaping (pages.py) is backed by headers a browser
enforces even if escaping ever failed: a Content-Security-Policy that allows no
script, no image, no font, no connection and no frame, and only the one inline
stylesheet by its hash. The server answers only GET and HEAD, and only requests whose
Host header names the loopback address it listens on: a web page the user has open
elsewhere cannot reach it through a DNS-rebound name.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from certify.errors import UsageError
from certify.report.viewer.pages import Viewer, style_hash

HOST = "127.0.0.1"
log = logging.getLogger("certify.view")


def content_security_policy(css: str) -> str:
    return ("default-src 'none'; script-src 'none'; connect-src 'none'; img-src 'none'; "
            f"font-src 'none'; style-src {style_hash(css)}; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "certify-view"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "certify view is read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _answer(self, *, body: bool) -> None:
        if self.headers.get("Host", "") not in self.server.hosts:
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host")
            return
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, max_num_fields=20).items()}
        try:
            page = self.server.viewer.render(url.path, query)
        except Exception:  # a bug must not leave the browser with an empty reply
            log.exception("certify view could not render %s", url.path)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "certify view could not render "
                            "this page (run certify -vv view for the traceback)")
            return
        data = page.html.encode("utf-8")
        self.send_response(page.status)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s " + format, self.address_string(), *args)


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, viewer: Viewer, port: int) -> None:
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as e:
            raise UsageError(f"cannot listen on {HOST}:{port}: {e.strerror}",
                             hint="choose another port with --port, or --port 0 for any "
                                  "free one") from None
        self.viewer = viewer
        self.port = self.server_address[1]
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.headers = {"Content-Type": "text/html; charset=utf-8",
                        "Content-Security-Policy": content_security_policy(viewer.css),
                        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY", "Cache-Control": "no-store",
                        "Cross-Origin-Resource-Policy": "same-origin"}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"
