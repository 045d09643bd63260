"""Watch-fed copies of the objects pool reconciles read on every timer run (the
worker Deployments and pods): one list, then one watch, per kind and watched
namespace (or the cluster), filtered by label on the API server. With a thousand
pools, listing each namespace's Deployments and pods again every few seconds was
most of the operator's CPU; a watch sends only what changes.

Each object is kept as a small projection (what the reconciles read), not whole.
Until a scope is listed, or after its watch broke, `synced` is False and callers
read the API instead: a missing watch grant costs speed, not correctness."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .apply import Applier, object_path

log = logging.getLogger("celeriac.mirror")
Project = Callable[[dict[str, Any]], Any]
WATCH_SECONDS = 290  # the API server ends each watch; we resume from the last version
RETRY_SECONDS = 5.0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Mirror:
    """Objects of one kind with a label selector, in `namespaces` (empty: all)."""

    def __init__(
        self,
        api: client.ApiClient,
        api_version: str,
        kind: str,
        selector: str,
        project: Project,
        namespaces: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.api, self.selector, self.project = api, selector, project
        self.probe = {"apiVersion": api_version, "kind": kind, "metadata": {}}
        self.scopes: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}  # namespace -> name -> projection
        self._synced: set[str | None] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[Any] = set()  # watch responses, closed by stop()

    def start(self) -> None:
        for scope in self.scopes:
            t = threading.Thread(
                target=self._run, args=(scope,), name=f"mirror-{self.probe['kind']}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._open)
        for resp in responses:
            # Ends the watch thread's blocking read (closing the response from
            # here would wait for that read to finish).
            sock = getattr(resp.connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def synced(self) -> bool:
        with self._lock:
            return len(self._synced) == len(self.scopes)

    def get(self, namespace: str, name: str) -> Any | None:
        with self._lock:
            return self._objects.get(namespace, {}).get(name)

    def items(self, namespace: str) -> list[Any]:
        with self._lock:
            return list(self._objects.get(namespace, {}).values())

    def _path(self, scope: str | None) -> str:
        return object_path({**self.probe, "metadata": {"namespace": scope}})

    def _run(self, scope: str | None) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(scope)
                version = self._watch(scope, version)
            except Gone:
                version = None
            except Exception as err:  # the API server restarting, a refused grant, ...
                with self._lock:
                    self._synced.discard(scope)
                if self._stop.is_set():
                    return
                log.warning("watch of %ss stopped (%s); retrying", self.probe["kind"], err)
                version = None
                self._stop.wait(RETRY_SECONDS)

    def _list(self, scope: str | None) -> str:
        listed = Applier(self.api)._call(
            "GET", self._path(scope), query=[("labelSelector", self.selector)]
        )
        fresh: dict[str, dict[str, Any]] = {}
        for obj in listed.get("items", []):
            ns, name = _key(obj)
            fresh.setdefault(ns, {})[name] = self.project(obj)
        with self._lock:
            if scope is None:
                self._objects = fresh
            else:
                self._objects[scope] = fresh.get(scope, {})
            self._synced.add(scope)
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, scope: str | None, version: str) -> str:
        """Follow changes until the API server ends the watch; the last version seen."""
        query = [
            ("labelSelector", self.selector),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", version),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        for event in self._events(scope, query):
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone()
                raise RuntimeError(obj.get("message", "watch error"))
            version = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            (ns, name), value = _key(obj), None if kind == "DELETED" else self.project(obj)
            with self._lock:
                if value is None:
                    self._objects.get(ns, {}).pop(name, None)
                else:
                    self._objects.setdefault(ns, {})[name] = value
        return version

    def _events(self, scope: str | None, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        method, url, headers, data, _ = self.api.param_serialize(
            "GET",
            self._path(scope),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(
            method, url, headers, data, _request_timeout=(10, WATCH_SECONDS + 30)
        )
        raw = resp.response
        with self._lock:
            self._open.add(raw)
        try:
            if not 200 <= resp.status < 300:
                raise ApiException(http_resp=resp)
            pending = b""
            for chunk in raw.stream(65536, decode_content=True):
                if self._stop.is_set():
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            with self._lock:
                self._open.discard(raw)
            raw.close()
            raw.release_conn()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
