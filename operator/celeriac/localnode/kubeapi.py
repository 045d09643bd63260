"""A thin JSON client for the API server (development and tests only: the local node).

The local node works on plain API dicts (camelCase, as the server sends them),
so it talks REST through the kubernetes client's connection pool and auth
instead of its generated models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import urllib3
from kubernetes import config

log = logging.getLogger("celeriac.localnode")

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Kube:
    """Requests against the cluster in a kubeconfig file."""

    def __init__(self, kubeconfig: str) -> None:
        self._api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._host = str(self._api.configuration.host).rstrip("/")

    def close(self) -> None:
        self._api.close()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "celeriac-localnode"}
        if content_type:
            headers["Content-Type"] = content_type
        for setting in self._api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._host + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10,
    ) -> Any:
        pool = self._api.rest_client.pool_manager
        resp = pool.request(
            method,
            self._url(path, params),
            body=json.dumps(body) if body is not None else None,
            headers=self._headers(content_type if body is not None else None),
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
        )
        data = resp.data
        if resp.status >= 400:
            message = data.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(message).get("message", message)
            raise ApiError(resp.status, message)
        return json.loads(data) if data else None

    def get(self, path: str, **params: Any) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return cast(dict[str, Any], self.request("GET", path, params=params))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def watch(
        self, path: str, params: Mapping[str, Any], timeout_seconds: int = 240
    ) -> Iterator[dict[str, Any]]:
        """Watch events ({type, object}) until the server ends the stream."""
        pool = self._api.rest_client.pool_manager
        query = {**params, "watch": "true", "timeoutSeconds": timeout_seconds}
        resp = pool.request(
            "GET",
            self._url(path, query),
            headers=self._headers(None),
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30),
            retries=False,
        )
        try:
            if resp.status >= 400:
                raise ApiError(resp.status, resp.read().decode(errors="replace"))
            buffer = b""
            for chunk in resp.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield cast(dict[str, Any], json.loads(line))
        finally:
            resp.release_conn()


def list_and_watch(
    kube: Kube,
    path: str,
    params: Mapping[str, Any],
    on_list: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    stopping: threading.Event,
) -> None:
    """List, then follow watch events until stopping; list again after any error."""
    while not stopping.is_set():
        try:
            listed = kube.request("GET", path, params=params)
            version = listed["metadata"]["resourceVersion"]
            on_list(listed.get("items") or [])
            while not stopping.is_set():
                query = {**params, "resourceVersion": version, "allowWatchBookmarks": "true"}
                for event in kube.watch(path, query):
                    if stopping.is_set():
                        return
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":  # e.g. 410 Gone: list again
                        raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        on_event(str(event.get("type")), obj)
        except Exception as e:
            if stopping.is_set():
                return
            log.info("watch %s: %s; listing again", path, e)
            stopping.wait(0.5)
