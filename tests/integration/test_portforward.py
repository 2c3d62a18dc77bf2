"""A port-forward whose local port is taken: said once, with the process holding it, then
forwarding as soon as the port is free (kubectl would fail to listen and be restarted
again and again, silently)."""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.request

import pytest

from kubeloop.cluster import ClusterInfo
from kubeloop.config import PortForward
from kubeloop.devloop.portforward import Forwarder
from kubeloop.kube import Kube
from tests.integration.conftest import eventually

WEB = {"terminationGracePeriodSeconds": 0,
       "containers": [{"name": "web", "image": "python:3.11-slim",
                       "command": ["python3", "-m", "http.server", "8000"],
                       "ports": [{"containerPort": 8000}]}]}  # fmt: skip


async def test_a_busy_local_port_is_told_once_with_its_owner(
    kube: Kube, cluster: ClusterInfo, namespace: str
) -> None:
    await kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "web", "namespace": namespace},
                      "spec": {"selector": {"matchLabels": {"app": "web"}},
                               "template": {"metadata": {"labels": {"app": "web"}}, "spec": WEB}}})  # fmt: skip
    await kube.apply({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "web", "namespace": namespace},
                      "spec": {"selector": {"app": "web"},
                               "ports": [{"port": 80, "targetPort": 8000}]}})  # fmt: skip
    await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "web", 90)  # fmt: skip
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    events: list[str] = []
    spec = PortForward.model_validate({"resource": "service/web", "port": 80, "localPort": port})
    forwarder = Forwarder(spec, namespace, kube, cluster.kubeconfig, cluster.context,
                          on_event=events.append)  # fmt: skip
    task = asyncio.create_task(forwarder.run())
    try:
        await eventually(lambda: any("in use" in e for e in events), 30, 0.2)
        await asyncio.sleep(4)  # several retries' worth
        told = [e for e in events if "in use" in e]
        assert len(told) == 1, events
        assert f"local port {port} is in use by" in told[0] and f"(pid {os.getpid()})" in told[0]
        assert not forwarder.ready.is_set()
        busy.close()
        await asyncio.wait_for(forwarder.ready.wait(), 30)

        def get() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return int(response.status)

        assert await eventually(lambda: asyncio.to_thread(get), 30, 0.3) == 200
    finally:
        busy.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
