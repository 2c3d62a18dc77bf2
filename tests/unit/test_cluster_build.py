"""The pure parts of ``builder: cluster``: BuildKit's progress output read into steps,
cache hits and failures; the builder's pod spec; its image's top layer; the registry
relay's password check and splicing (on loopback sockets)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import socket
import struct
import tarfile
from pathlib import Path

import pytest

from kubeloop.build.cluster import (
    RELAY_PORT,
    Progress,
    buildctl_argv,
    builder_objects,
    buildkitd_toml,
    top_layer,
)
from kubeloop.build.relay import Relay, authorized
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import Layer

SUCCESS = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 511B done
#1 DONE 0.0s
#5 [internal] load build context
#5 transferring context: 2.24kB 0.0s done
#5 DONE 0.0s
#7 [2/3] RUN pip install flask
#7 CACHED
#8 [3/3] COPY app/ .
#8 DONE 0.0s
#11 exporting to image
#11 DONE 0.2s
"""

FAILURE = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#6 [2/2] RUN echo preparing && exit 3
#6 0.101 preparing
#6 0.102 it-broke
#6 ERROR: process "/bin/sh -c echo preparing && exit 3" did not complete successfully: exit code: 3
------
 > [2/2] RUN echo preparing && exit 3:
------
error: failed to solve: process "/bin/sh -c echo preparing && exit 3" did not complete
"""


def feed(text: str) -> Progress:
    progress = Progress()
    for line in text.splitlines():
        progress.feed(line)
    return progress


def test_progress_reads_cached_steps_and_context_size() -> None:
    progress = feed(SUCCESS)
    assert progress.cached == {"[2/3] RUN pip install flask"}
    assert progress.context_sent == 511 + 2240
    assert progress.failure() is None


def test_a_failed_step_is_named_with_its_output() -> None:
    error = feed(FAILURE).failure()
    assert error is not None
    assert "[2/2] RUN echo preparing && exit 3" in error.message
    assert "exit code: 3" in error.message
    assert "    preparing\n    it-broke" in error.message  # timestamps stripped
    assert "Dockerfile" in (error.hint or "")


def test_a_missing_base_image_says_how_to_make_it() -> None:
    error = feed(
        "#2 [internal] load metadata for docker.io/library/golang:1.19\n"
        "#2 ERROR: docker.io/library/golang:1.19: not found\n"
    ).failure()
    assert error is not None
    assert "cannot find the base image docker.io/library/golang:1.19" in error.message
    assert "kubeloop cluster seed-image" in (error.hint or "")


def test_step_output_is_bounded() -> None:
    progress = feed("#3 [1/1] RUN yes\n" + "".join(f"#3 0.1 line {i}\n" for i in range(10_000)))
    assert len(progress.output["3"]) <= 60


def test_buildctl_arguments() -> None:
    argv = buildctl_argv(Path("/bin/buildctl"), "kube-pod://p", Path("/src"),
                         Path("/src/docker/Dockerfile.dev"), "r:5000/a:t",
                         {"B": "2", "A": "x y"})  # fmt: skip
    assert argv[:4] == ["/bin/buildctl", "--addr", "kube-pod://p", "build"]
    assert "context=/src" in argv and "dockerfile=/src/docker" in argv
    assert "filename=Dockerfile.dev" in argv
    args = [a for a in argv if a.startswith("build-arg:")]
    assert args == ["build-arg:A=x y", "build-arg:B=2"]
    assert argv[-1] == "type=image,name=r:5000/a:t,push=true,oci-mediatypes=false"


def test_the_builder_is_rootless_and_unprivileged() -> None:
    config_map, deployment = builder_objects("reg/buildkit:1", "localhost:5000")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsUser"] == 1000 and security["runAsNonRoot"] is True
    assert "privileged" not in security and "capabilities" not in security
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert "--oci-worker-no-process-sandbox" in container["args"]
    assert all("hostPath" not in volume for volume in pod["volumes"])
    # A loopback registry: the node's network, and the relay as the registry.
    assert pod["hostNetwork"] is True
    assert f'mirrors = ["127.0.0.1:{RELAY_PORT}"]' in config_map["data"]["buildkitd.toml"]
    _, remote = builder_objects("reg/buildkit:1", "registry.example:5000")
    assert "hostNetwork" not in remote["spec"]["template"]["spec"]
    assert 'mirrors = ["registry.example:5000"]' in buildkitd_toml("registry.example:5000")


def test_a_new_spec_changes_the_pod_template() -> None:
    first = builder_objects("reg/buildkit:1", "localhost:5000")[1]
    second = builder_objects("reg/buildkit:2", "localhost:5000")[1]
    key = "kubeloop.dev/builder-spec"
    assert (first["spec"]["template"]["metadata"]["annotations"][key]
            != second["spec"]["template"]["metadata"]["annotations"][key])  # fmt: skip


def _base_layer(folder: Path) -> Layer:
    path = folder / "base.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("newuidmap", "newgidmap"):
            info = tarfile.TarInfo(f"usr/bin/{name}")
            info.size, info.mode = 4, 0o4755
            tar.addfile(info, io.BytesIO(b"\x7fELF"))
    return Layer(path, "sha256:x", "sha256:y", path.stat().st_size)


def test_top_layer_gives_the_id_mappers_file_capabilities(tmp_path: Path) -> None:
    binaries = tmp_path / "bin"
    binaries.mkdir()
    for name in ("buildkitd", "buildctl"):
        (binaries / name).write_bytes(name.encode())
        (binaries / name).chmod(0o755)
    layer = top_layer(binaries, _base_layer(tmp_path), tmp_path)
    with gzip.open(layer.path) as raw:
        data = raw.read()
    import hashlib

    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["usr/local/bin/buildkitd"].uid == 0
        assert tar.extractfile("usr/local/bin/buildctl").read() == b"buildctl"  # type: ignore[union-attr]
        for name, capability in (("newuidmap", 7), ("newgidmap", 6)):
            member = members[f"usr/bin/{name}"]
            assert member.mode == 0o755  # no setuid bit
            value = member.pax_headers["SCHILY.xattr.security.capability"]
            raw_cap = value.encode("utf-8", "surrogateescape")
            assert struct.unpack("<IIIII", raw_cap) == (0x02000001, 1 << capability, 0, 0, 0)


def test_relay_password_check() -> None:
    good = base64.b64encode(b"kubeloop:s3cret").decode()
    assert authorized(f"GET /v2/ HTTP/1.1\r\nAuthorization: Basic {good}\r\n\r\n".encode(),
                      "s3cret")  # fmt: skip
    assert not authorized(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", "s3cret")
    bad = base64.b64encode(b"kubeloop:guess").decode()
    assert not authorized(f"GET / HTTP/1.1\r\nauthorization: basic {bad}\r\n\r\n".encode(),
                          "s3cret")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    return answer


async def test_relay_refuses_strangers_and_splices_the_authenticated() -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + head[:3])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    relay = Relay(_free_port(), f"127.0.0.1:{up_port}")
    async with server, relay.running():
        refused = await _exchange(relay.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 401") and b"WWW-Authenticate: Basic" in refused
        tls = await _exchange(relay.port, b"\x16\x03\x01\x02\x00")
        assert tls.startswith(b"HTTP/1.0 400")
        token = base64.b64encode(f"kubeloop:{relay.password}".encode()).decode()
        answer = await _exchange(
            relay.port, f"GET /v2/ HTTP/1.1\r\nAuthorization: Basic {token}\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"okGET")
    with relay.docker_config() as folder:
        config = (Path(folder) / "config.json").read_text()
        assert f"127.0.0.1:{relay.port}" in config and token in config


def test_a_crashing_builder_is_explained_at_once() -> None:
    from kubeloop.build.cluster import _stuck, _why_not_ready

    crashing = {"status": {"containerStatuses": [{
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}}  # fmt: skip
    starting = {"status": {"containerStatuses": [
        {"state": {"waiting": {"reason": "ContainerCreating"}}}]}}  # fmt: skip
    assert _stuck(crashing) and not _stuck(starting)
    assert _why_not_ready([crashing], None) == "CrashLoopBackOff: back-off 10s"
    refused = {"status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                          "message": "pods is forbidden: violates"}]}}  # fmt: skip
    assert _why_not_ready([], refused) == "pods is forbidden: violates"


def test_kubeloop_yaml_accepts_the_cluster_builder(tmp_path: Path) -> None:
    from kubeloop.config.loader import parse
    from kubeloop.errors import KubeloopError

    text = "name: x\nartifacts: [{image: a, builder: cluster}]\nmanifests: {raw: [k.yaml]}\n"
    config = parse(text, tmp_path / "kubeloop.yaml")
    assert config.project.artifacts[0].builder == "cluster"
    try:
        parse(text.replace("cluster", "kaniko"), tmp_path / "kubeloop.yaml")
    except KubeloopError as exc:
        assert "cluster" in str(exc)  # the allowed values are listed
    else:
        raise AssertionError("an unknown builder was accepted")


def test_a_target_stage_reaches_every_builder_and_the_content_tag(tmp_path: Path) -> None:
    from kubeloop.build.artifacts import _build_argv, reference_of
    from kubeloop.config import parse

    argv = buildctl_argv(Path("/bin/buildctl"), "kube-pod://p", Path("/src"),
                         Path("/src/Dockerfile"), "r:5000/a:t", {}, target="build")  # fmt: skip
    assert argv[argv.index("target=build") - 1] == "--opt"
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim AS build\nFROM build\n")
    text = "name: p\nartifacts:\n  - image: a\n{extra}manifests: {{raw: [k.yaml]}}\n"
    plain = parse(text.format(extra=""), tmp_path / "kubeloop.yaml")
    staged = parse(text.format(extra="    target: build\n"), tmp_path / "kubeloop.yaml")
    for builder in ("docker", "buildah", "podman"):
        artifact = staged.project.artifacts[0].model_copy(update={"builder": builder})
        built = _build_argv(artifact, tmp_path, "r/a:t")
        assert built[built.index("--target") + 1] == "build", built
    assert "--target" not in _build_argv(plain.project.artifacts[0], tmp_path, "r/a:t")
    # Another stage is another image; without a target the tag is the one of before.
    tags = [asyncio.run(reference_of(c, c.project.artifacts[0], "r")) for c in (plain, staged)]
    assert tags[0] != tags[1]
    with pytest.raises(KubeloopError, match="target"):
        parse(text.format(extra="    target: '-x y'\n"), tmp_path / "kubeloop.yaml")
