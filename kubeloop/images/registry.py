"""Push an image made from a root filesystem to an OCI registry.

Our own small client because no tool is guaranteed on the host when the cluster first
needs an image (the pause image is pushed before any builder exists), and the
distribution API calls involved are three: check blob, upload blob, put manifest.
Layers are streamed from disk, never held in memory.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubeloop.errors import KubeloopError

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The registry is spoken to over plain http://, so a client needs no CA bundle: loading
# one costs 20-40 ms per client, several times in each `kubeloop dev` start-up.
PLAIN_HTTP = False


@dataclass(frozen=True)
class ImageConfig:
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    architecture: str = "amd64"


@dataclass(frozen=True)
class Layer:
    path: Path  # gzipped tar on disk
    digest: str
    diff_id: str
    size: int


def split_reference(reference: str) -> tuple[str, str, str]:
    """``localhost:5000/library/python:3.11-slim`` → (registry, repository, tag)."""
    first, _, rest = reference.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        raise KubeloopError(f"image reference '{reference}' names no registry host")
    repository, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return first, repository or rest, tag or "latest"


class _HashingWriter(io.RawIOBase):
    """Counts and hashes the uncompressed tar stream on its way into gzip."""

    def __init__(self, sink: gzip.GzipFile) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.sink.write(data)
        return len(data)


def layer_from_dir(root: Path, work: Path) -> Layer:
    """Tar ``root`` (owners, modes, links kept) into a gzipped layer in ``work``."""
    raw = tempfile.NamedTemporaryFile(dir=work, suffix=".tar.gz", delete=False)
    with raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        hashing = _HashingWriter(gz)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
    return _finish_layer(Path(raw.name), hashing.digest.hexdigest())


def layer_from_files(files: dict[str, tuple[bytes, int]], work: Path) -> Layer:
    """A layer holding the given ``{path: (content, mode)}`` files."""
    raw = tempfile.NamedTemporaryFile(dir=work, suffix=".tar.gz", delete=False)
    with raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        hashing = _HashingWriter(gz)
        with tarfile.open(fileobj=hashing, mode="w|") as tar:
            for name, (content, mode) in sorted(files.items()):
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
    return _finish_layer(Path(raw.name), hashing.digest.hexdigest())


def _finish_layer(path: Path, diff_hex: str) -> Layer:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return Layer(path, f"sha256:{digest.hexdigest()}", f"sha256:{diff_hex}", path.stat().st_size)


def image_config(layers: list[Layer], config: ImageConfig) -> bytes:
    env = {"PATH": DEFAULT_PATH, **config.env}
    document = {
        "architecture": config.architecture,
        "os": "linux",
        "config": {
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Cmd": config.cmd or None,
            "Entrypoint": config.entrypoint or None,
            "User": config.user,
            "WorkingDir": config.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": "kubeloop"} for _ in layers],
    }
    return json.dumps(document, sort_keys=True).encode()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1 << 20):
            yield chunk


async def _push_blob(
    client: httpx.AsyncClient, base: str, repository: str, digest: str, body: Path | bytes
) -> None:
    head = await client.head(f"{base}/v2/{repository}/blobs/{digest}")
    if head.status_code == 200:
        return
    start = await client.post(f"{base}/v2/{repository}/blobs/uploads/")
    _raise_for(start, "start a blob upload")
    location = start.headers["location"]
    if location.startswith("/"):
        location = base + location
    separator = "&" if "?" in location else "?"
    content = body if isinstance(body, bytes) else _file_chunks(body)
    size = len(body) if isinstance(body, bytes) else body.stat().st_size
    done = await client.put(
        f"{location}{separator}digest={digest}",
        content=content,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
    )
    _raise_for(done, f"upload blob {digest[:19]}")


def _raise_for(response: httpx.Response, doing: str) -> None:
    if response.status_code >= 400:
        raise KubeloopError(
            f"registry refused to {doing}: HTTP {response.status_code} {response.text[:200]}"
        )


async def push_layers(reference: str, layers: list[Layer], config: ImageConfig) -> str:
    """Push layers + config + manifest; return the manifest digest."""
    registry, repository, tag = split_reference(reference)
    base = f"http://{registry}"
    config_blob = image_config(layers, config)
    config_digest = f"sha256:{hashlib.sha256(config_blob).hexdigest()}"
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config_blob), "digest": config_digest},
        "layers": [
            {"mediaType": LAYER_TYPE, "size": layer.size, "digest": layer.digest}
            for layer in layers
        ],
    }).encode()  # fmt: skip
    timeout = httpx.Timeout(300.0, connect=5.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            for layer in layers:
                await _push_blob(client, base, repository, layer.digest, layer.path)
            await _push_blob(client, base, repository, config_digest, config_blob)
            response = await client.put(
                f"{base}/v2/{repository}/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": MANIFEST_TYPE},
            )
            _raise_for(response, f"store the manifest of {reference}")
    except httpx.ConnectError as exc:
        raise KubeloopError(
            f"cannot reach the registry at {registry}: {exc}",
            "is the cluster running? check with 'kubeloop cluster status'",
        ) from exc
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


async def push_rootfs(reference: str, rootfs: Path, config: ImageConfig) -> str:
    """Push a directory as a one-layer image."""
    with tempfile.TemporaryDirectory(prefix="kubeloop-layer-") as work:
        layer = await asyncio.to_thread(layer_from_dir, rootfs, Path(work))
        return await push_layers(reference, [layer], config)


async def push_files(
    reference: str, files: dict[str, tuple[bytes, int]], config: ImageConfig
) -> str:
    with tempfile.TemporaryDirectory(prefix="kubeloop-layer-") as work:
        # Gzip of a binary (the pause image's, the sync agent's): CPU work, in a thread.
        layer = await asyncio.to_thread(layer_from_files, files, Path(work))
        return await push_layers(reference, [layer], config)


async def push_layer_file(reference: str, layer_path: Path, config: ImageConfig) -> str:
    """Push a cached, already gzipped layer (its digests are recomputed)."""
    layer = await asyncio.to_thread(_layer_of_file, layer_path)
    return await push_layers(reference, [layer], config)


def _layer_of_file(layer_path: Path) -> Layer:
    diff = hashlib.sha256()
    with gzip.open(layer_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            diff.update(chunk)
    return _finish_layer(layer_path, diff.hexdigest())


async def manifest_exists(reference: str) -> bool:
    registry, repository, tag = split_reference(reference)
    try:
        async with httpx.AsyncClient(timeout=5.0, verify=PLAIN_HTTP) as client:
            response = await client.head(
                f"http://{registry}/v2/{repository}/manifests/{tag}",
                headers={"Accept": MANIFEST_TYPE},
            )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def fetch_image_config(reference: str) -> dict[str, object]:
    """The ``config`` section (Entrypoint, Cmd, Env...) of an image in a registry."""
    registry, repository, tag = split_reference(reference)
    accept = ", ".join([MANIFEST_TYPE, "application/vnd.oci.image.manifest.v1+json"])
    async with httpx.AsyncClient(timeout=10.0, verify=PLAIN_HTTP) as client:
        manifest = await client.get(f"http://{registry}/v2/{repository}/manifests/{tag}",
                                    headers={"Accept": accept})  # fmt: skip
        _raise_for(manifest, f"read the manifest of {reference}")
        digest = manifest.json()["config"]["digest"]
        blob = await client.get(f"http://{registry}/v2/{repository}/blobs/{digest}")
        _raise_for(blob, f"read the config of {reference}")
    config = blob.json().get("config") or {}
    return dict(config)
