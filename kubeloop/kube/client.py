"""A small async facade over kr8s: server-side apply, get, delete, waits.

kr8s gives the connection (kubeconfig, auth, TLS, retries); this adds what kubeloop
needs on top, in one place: apply by manifest with our field manager, plural lookup by
discovery, and waits that explain what they are waiting for when they time out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx

from kubeloop.core import Obj, WaitTimeout, wait_until
from kubeloop.errors import KubeloopError
from kubeloop.kube.kubeconfig import server_of

FIELD_MANAGER = "kubeloop"


class KubeError(KubeloopError):
    """A Kubernetes API request failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class Kube:
    """One connection to one cluster."""

    def __init__(self, api: Any) -> None:  # a kr8s.asyncio.Api (kr8s ships no types)
        self._api = api
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    @classmethod
    async def connect(
        cls, kubeconfig: Path | str | None = None, context: str | None = None
    ) -> Kube:
        # Start-up speed: kr8s takes ~0.4 s to import, so it loads on the first
        # connection, not with this module (imported by every project command).
        import kr8s.asyncio

        try:
            api = await kr8s.asyncio.api(
                kubeconfig=str(kubeconfig) if kubeconfig else None, context=context
            )
        except httpx.TransportError as exc:  # kr8s asks the server its version at once
            server = server_of(Path(kubeconfig), context) if kubeconfig else None
            raise KubeError(
                f"cannot reach the Kubernetes API server{f' at {server}' if server else ''}: "
                f"{exc or type(exc).__name__}",
                hint="is the cluster running? 'kubeloop cluster status' tells; for a native "
                "cluster, 'kubeloop cluster create' starts it again (after a reboot too)",
            ) from exc
        except Exception as exc:  # kr8s raises several types for a bad kubeconfig
            raise KubeError(
                f"cannot load the cluster's connection settings: {exc}",
                hint="check the kubeconfig ('kubeloop cluster kubeconfig') or the --context",
            ) from exc
        return cls(api)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Obj | str | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Obj:
        base, _, last = path.rpartition("/")
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if body is not None:
            kwargs["content"] = body if isinstance(body, str) else json.dumps(body)
            kwargs["headers"] = {"Content-Type": content_type}
        try:
            async with self._api.call_api(
                method, version="", base=base, url=last, raise_for_status=False, **kwargs
            ) as response:
                return _decode(method, path, response)
        except httpx.TransportError as exc:
            raise KubeError(
                f"cannot reach the Kubernetes API server: {exc or type(exc).__name__}",
                hint="is the cluster running? 'kubeloop cluster status' tells",
            ) from exc

    async def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) for a kind, from discovery (cached per group version)."""
        if api_version not in self._resources:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = await self.request("GET", prefix)
            self._resources[api_version] = {
                r["kind"]: (r["name"], r["namespaced"])
                for r in listing.get("resources", [])
                if "/" not in r["name"]
            }
        found = self._resources[api_version].get(kind)
        if found is None:
            raise KubeError(f"the cluster does not serve {kind} in {api_version}")
        return found

    async def object_path(self, obj: Mapping[str, Any], namespace: str | None = None) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = await self._resource(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        name = obj["metadata"]["name"]
        if namespaced:
            ns = obj["metadata"].get("namespace") or namespace or "default"
            return f"{prefix}/namespaces/{ns}/{plural}/{name}"
        return f"{prefix}/{plural}/{name}"

    async def apply(self, obj: Obj, namespace: str | None = None, force: bool = True) -> Obj:
        """Server-side apply ``obj`` as kubeloop's field manager."""
        path = await self.object_path(obj, namespace)
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self.request(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", params=params
        )

    async def get(self, path: str) -> Obj | None:
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(self, obj: Mapping[str, Any], grace_seconds: int | None = None) -> bool:
        path = await self.object_path(obj)
        params = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_seconds)
        try:
            await self.request("DELETE", path, params=params)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def stream_lines(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        """Yield the lines of a streaming response (pod logs with follow=true)."""
        base, _, last = path.rpartition("/")
        async with self._api.call_api(
            "GET", version="", base=base, url=last, stream=True, raise_for_status=False,
            params=dict(params or {}),
        ) as response:  # fmt: skip
            if response.status_code >= 400:
                await response.aread()
                _decode("GET", path, response)
            async for line in response.aiter_lines():
                yield line

    async def version(self) -> Obj:
        return cast(Obj, await self._api.version())

    async def wait_for(
        self, path: str, ready: Callable[[Obj], bool], what: str, timeout: float,
        interval: float = 0.2,
    ) -> Obj:  # fmt: skip
        """Poll ``path`` until ``ready(obj)`` is true; on timeout, say what was seen."""
        last: Obj | None = None

        async def seen_ready() -> bool:
            nonlocal last
            last = await self.get(path)
            return last is not None and ready(last)

        try:
            await wait_until(seen_ready, timeout, interval, what)
        except WaitTimeout:
            status = json.dumps((last or {}).get("status", {}))[:600]
            raise KubeError(f"timed out after {timeout:.0f}s waiting for {what}; last status: "
                            f"{status}") from None  # fmt: skip
        assert last is not None
        return last

    async def wait_node_ready(self, name: str, timeout: float = 60) -> Obj:
        return await self.wait_for(f"/api/v1/nodes/{name}", node_is_ready, f"node {name} Ready",
                                   timeout)  # fmt: skip

    async def wait_pod_running(self, namespace: str, name: str, timeout: float = 60) -> Obj:
        return await self.wait_for(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            lambda p: p.get("status", {}).get("phase") == "Running" and pod_is_ready(p),
            f"pod {namespace}/{name} Running",
            timeout,
            interval=0.1,
        )

    async def close(self) -> None:
        session = getattr(self._api, "_session", None)
        if session is not None:
            await session.aclose()


def _decode(method: str, path: str, response: httpx.Response) -> Obj:
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise KubeError(f"{method} {path}: {message}", status=response.status_code)
    if not response.content:
        return {}
    try:
        return cast(Obj, response.json())
    except ValueError:
        return {"text": response.text}


def label_selector(labels: Mapping[str, str]) -> str:
    """``{app: web, tier: api}`` → ``app=web,tier=api`` (a labelSelector query value)."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _condition(obj: Mapping[str, Any], kind: str) -> bool:
    for condition in obj.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def node_is_ready(node: Mapping[str, Any]) -> bool:
    return _condition(node, "Ready")


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    return _condition(pod, "Ready")
