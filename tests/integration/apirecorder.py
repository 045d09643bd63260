"""A recording proxy in front of the API server: the tests' audit log.

Clients talk plain HTTP to it on loopback; it forwards every request over TLS with
the client's own Authorization header (so RBAC applies to the client, not to the
proxy) and records the RBAC verb, resource and response status of each."""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

# Hop-by-hop headers, and those each connection sets itself.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
_OWN = {"date", "server"}  # BaseHTTPRequestHandler.send_response adds its own


@dataclass(frozen=True)
class Request:
    verb: str  # RBAC verb: get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # with its subresource, e.g. workflowbrokers/status
    namespace: str | None
    status: int

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)


def classify(method: str, target: str) -> tuple[str, str, str, str | None] | None:
    """(verb, group, resource, namespace) of a resource request; None for discovery,
    /version and other non-resource paths."""
    url = urllib.parse.urlsplit(target)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = "/".join([rest[0], *rest[2:3]])
    named = len(rest) > 1
    query = urllib.parse.parse_qs(url.query)
    watch = query.get("watch", ["false"])[0].lower() in ("true", "1")
    verbs = {
        "GET": "watch" if watch else "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }
    return verbs[method], group, resource, namespace


class ApiRecorder:
    """Use as a context manager; `url` is the address to give clients."""

    def __init__(self, upstream: str, ca_file: Path) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 443
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True  # open watches must not block shutdown
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> ApiRecorder:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, method: str, target: str, status: int) -> None:
        found = classify(method, target)
        if not found:
            return
        with self._lock:
            self._requests.append(Request(*found, status))
            if found[0] == "patch" and status == 201:
                # A server-side apply that creates the object is authorized as
                # `create` as well.
                self._requests.append(Request("create", *found[1:], status))

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        upstream = http.client.HTTPSConnection(self._host, self._port, context=self._context)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            resp = upstream.getresponse()
            self._record(handler.command, handler.path, resp.status)
            handler.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP | _OWN:
                    handler.send_header(key, value)
            handler.end_headers()
            # Relay as it arrives: watch responses stream for minutes.
            while chunk := resp.read1(65536):
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except (OSError, http.client.HTTPException):
            pass  # the client or the server went away; nothing left to relay
        finally:
            upstream.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, and a body ends when it closes,
            # so streamed responses need no re-chunking.
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                recorder._forward(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass  # the recorded requests are the log

        return Handler
