"""Build examples/hello, deploy it to the kubeloop cluster, and forward a local port.

Used by scripts/quickstart.sh. Interactive runs keep the port-forward up until Ctrl-C;
non-interactive ones (CI) make one request through it and exit.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml

from kubeloop.build import build_and_push, ensure_docker_engine
from kubeloop.cluster import get_cluster
from kubeloop.cluster.native.binaries import ensure_binaries
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube

EXAMPLE = Path(__file__).parents[1] / "examples" / "hello"
LOCAL_PORT = 8080


async def main() -> None:
    info = get_cluster()
    assert info.registry
    await ensure_docker_engine()
    built = await build_and_push(EXAMPLE, "examples/hello", info.registry)
    print(f"image: {built.image} ({'built' if built.built else 'unchanged, not rebuilt'})")
    kube = await Kube.connect(info.kubeconfig, info.context)
    try:
        for obj in yaml.safe_load_all((EXAMPLE / "manifest.yaml").read_text()):
            if obj["kind"] == "Deployment":
                obj["spec"]["template"]["spec"]["containers"][0]["image"] = built.image
            await kube.apply(obj, namespace="default")
        await kube.wait_for(
            "/apis/apps/v1/namespaces/default/deployments/hello",
            lambda d: d.get("status", {}).get("readyReplicas", 0) >= 1
            and d["status"].get("updatedReplicas") == d["spec"]["replicas"],
            "deployment hello to roll out", timeout=120,
        )  # fmt: skip
    finally:
        await kube.close()
    kubectl = (await ensure_binaries(quiet=True))["kubectl"]
    forward = await asyncio.create_subprocess_exec(
        str(kubectl), "--kubeconfig", info.kubeconfig, "port-forward", "svc/hello",
        f"{LOCAL_PORT}:80", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert forward.stdout is not None
    await forward.stdout.readline()
    import httpx

    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{LOCAL_PORT}/")
    print(f"http://127.0.0.1:{LOCAL_PORT}/ answers: {reply.text.strip()}")
    if sys.stdin.isatty():
        print("port-forward running; Ctrl-C to stop")
        await forward.wait()
    forward.kill()
    await forward.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KubeloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        pass
