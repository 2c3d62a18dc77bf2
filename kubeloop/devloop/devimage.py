"""Dev mode's image: the app's image plus one layer holding kubeloop's agent (the process
supervisor) at ``/kubeloop/kubeloop-agent``, made in the registry without a build.

Why: the other way to get the supervisor into the app's container is an init container
that copies it into a shared volume, and the kubelet starts the app only after it has
seen that init container end, which it notices on its next relist of the containers
(every second). That cost a new dev pod 1 to 1.5 s before it could be Ready. An image that
already holds the binary starts like the plain app.

The derived image is made once per app image and agent version (its tag says which) by
registry calls only: the supervisor layer is pushed once, mounted into the app's
repository, and a new config and manifest name it after the app's layers. It is made
only for images kubeloop built into the cluster's registry; for any other image (or a
manifest kind not handled here) dev mode keeps the init container.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from pathlib import Path

import httpx

from kubeloop.agent import agent_binary, agent_version
from kubeloop.agent._binary import go_arch
from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import (
    PLAIN_HTTP,
    ImageConfig,
    Layer,
    layer_from_files,
    push_layers,
    split_reference,
)

SUPERVISOR_PATH = "kubeloop/kubeloop-agent"  # the path devmode's command runs
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPES = {DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
               OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip"}  # fmt: skip


def derived_tag(tag: str, version: str) -> str:
    """The derived image's tag: the app's (a content tag) and the agent's version, so the
    same sources give the same reference and an unchanged deploy rolls nothing out."""
    return f"{tag}-sv{version[:8]}"[:128]


class _Registry:
    """The few distribution-API calls the derivation needs, on one connection."""

    def __init__(self, client: httpx.AsyncClient, registry: str) -> None:
        self.client = client
        self.base = f"http://{registry}/v2"

    async def manifest(self, repository: str, tag: str) -> tuple[Obj, str] | None:
        response = await self.client.get(
            f"{self.base}/{repository}/manifests/{tag}",
            headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"},
        )
        if response.status_code != 200:
            return None
        return response.json(), response.headers.get("content-type", "").split(";")[0]

    async def exists(self, repository: str, tag: str) -> bool:
        response = await self.client.head(
            f"{self.base}/{repository}/manifests/{tag}",
            headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"},
        )
        return response.status_code == 200

    async def blob(self, repository: str, digest: str) -> bytes:
        response = await self.client.get(f"{self.base}/{repository}/blobs/{digest}")
        _check(response, f"read blob {digest[:19]} of {repository}")
        return response.content

    async def mount(self, repository: str, digest: str, source: str) -> None:
        """Make a blob of ``source`` part of ``repository`` (no bytes sent when the
        registry mounts it; uploaded otherwise)."""
        head = await self.client.head(f"{self.base}/{repository}/blobs/{digest}")
        if head.status_code == 200:
            return
        started = await self.client.post(f"{self.base}/{repository}/blobs/uploads/",
                                         params={"mount": digest, "from": source})  # fmt: skip
        if started.status_code == 201:
            return
        await self.upload(repository, digest, await self.blob(source, digest), started)

    async def upload(self, repository: str, digest: str, data: bytes,
                     started: httpx.Response | None = None) -> None:  # fmt: skip
        if started is None or started.status_code != 202:
            started = await self.client.post(f"{self.base}/{repository}/blobs/uploads/")
        _check(started, "start a blob upload")
        location = started.headers["location"]
        if location.startswith("/"):
            location = self.base.removesuffix("/v2") + location
        # The location carries the upload's state in its query: add to it, not replace it.
        separator = "&" if "?" in location else "?"
        done = await self.client.put(f"{location}{separator}digest={digest}", content=data,
                                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        _check(done, f"upload blob {digest[:19]}")

    async def put_manifest(self, repository: str, tag: str, body: bytes, kind: str) -> None:
        response = await self.client.put(f"{self.base}/{repository}/manifests/{tag}",
                                         content=body, headers={"Content-Type": kind})  # fmt: skip
        _check(response, f"store the manifest {repository}:{tag}")


def _check(response: httpx.Response, doing: str) -> None:
    if response.status_code >= 300:
        raise KubeloopError(f"registry refused to {doing}: HTTP {response.status_code}")


async def _supervisor_layer(registry: _Registry, push_registry: str) -> tuple[str, Obj, str]:
    """(repository, layer descriptor, diff id) of the one-layer supervisor image, pushed
    once per agent version and architecture."""
    repository, tag = "kubeloop/supervisor", f"{agent_version()}-{go_arch()}"
    found = await registry.manifest(repository, tag)
    if found is None:
        binary = (await agent_binary()).read_bytes()
        with tempfile.TemporaryDirectory(prefix="kubeloop-layer-") as work:
            layer: Layer = await asyncio.to_thread(
                layer_from_files, {SUPERVISOR_PATH: (binary, 0o755)}, Path(work)
            )
            await push_layers(f"{push_registry}/{repository}:{tag}", [layer],
                              ImageConfig(architecture=go_arch()))  # fmt: skip
        found = await registry.manifest(repository, tag)
        if found is None:
            raise KubeloopError(f"the supervisor image {repository}:{tag} was not stored")
    manifest, _ = found
    config = json.loads(await registry.blob(repository, str(manifest["config"]["digest"])))
    return repository, manifest["layers"][0], str(config["rootfs"]["diff_ids"][0])


async def with_supervisor(image: str) -> str:
    """The reference of ``image`` plus the supervisor layer, made if missing."""
    registry_host, repository, tag = split_reference(image)
    tag = tag.split("@")[0]
    new_tag = derived_tag(tag, agent_version())
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=5.0), verify=PLAIN_HTTP
    ) as client:
        registry = _Registry(client, registry_host)
        if not await registry.exists(repository, new_tag):
            await _derive(registry, registry_host, repository, tag, new_tag)
    return f"{registry_host}/{repository}:{new_tag}"


async def _derive(registry: _Registry, host: str, repository: str, tag: str, new_tag: str) -> None:
    found, (source, layer, diff_id) = await asyncio.gather(
        registry.manifest(repository, tag), _supervisor_layer(registry, host)
    )
    if found is None:
        raise KubeloopError(f"{host}/{repository}:{tag} has no single-platform manifest")
    manifest, kind = found
    if kind not in LAYER_TYPES:
        raise KubeloopError(f"{host}/{repository}:{tag} is a {kind}, not an image manifest")
    old_config = manifest["config"]
    config = json.loads(await registry.blob(repository, str(old_config["digest"])))
    config["rootfs"]["diff_ids"].append(diff_id)
    config.setdefault("history", []).append({"created_by": "kubeloop dev: process supervisor"})
    config_bytes = json.dumps(config).encode()
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    await asyncio.gather(registry.mount(repository, str(layer["digest"]), source),
                         registry.upload(repository, config_digest, config_bytes))  # fmt: skip
    derived = {
        **manifest,
        "config": {**old_config, "digest": config_digest, "size": len(config_bytes)},
        "layers": [*manifest["layers"],
                   {"mediaType": LAYER_TYPES[kind], "digest": layer["digest"],
                    "size": layer["size"]}],
    }  # fmt: skip
    await registry.put_manifest(repository, new_tag, json.dumps(derived).encode(), kind)
