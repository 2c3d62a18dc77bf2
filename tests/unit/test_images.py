import gzip
import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubeloop import apt
from kubeloop.build.docker import base_images, content_tag
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import layer_from_files, split_reference
from kubeloop.images.seed import registry_reference


def test_references() -> None:
    assert split_reference("localhost:5000/library/python:3.11-slim") == (
        "localhost:5000", "library/python", "3.11-slim")  # fmt: skip
    assert split_reference("localhost:5000/pause") == ("localhost:5000", "pause", "latest")
    with pytest.raises(KubeloopError):
        split_reference("python:3.11")
    assert registry_reference("python:3.11-slim", "localhost:5000") == (
        "localhost:5000/library/python:3.11-slim")  # fmt: skip
    assert registry_reference("me/app", "r:1") == "r:1/me/app:latest"


def test_layer_digests_match_content(tmp_path: Path) -> None:
    layer = layer_from_files({"/pause": (b"binary", 0o755)}, tmp_path)
    assert layer.digest == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()
    raw = gzip.decompress(layer.path.read_bytes())
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(layer.path) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755


def test_content_tag_follows_sources_and_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    first = content_tag(tmp_path)
    (tmp_path / "debug.log").write_text("noise")
    assert content_tag(tmp_path) == first
    (tmp_path / "app.py").write_text("print(2)\n")
    assert content_tag(tmp_path) != first


def test_base_images_skip_stages_scratch_and_args(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG V=1\nFROM golang:1.19 AS build\nRUN x\nFROM --platform=linux/amd64 build AS again\n"
        "FROM debian:bookworm-slim\nFROM scratch\nFROM repo/img:${V}\n"
    )
    assert base_images(dockerfile) == ["golang:1.19", "debian:bookworm-slim"]


def test_images_do_not_depend_on_clusters() -> None:
    """Base images are made and pushed without the cluster layer (a lower layer)."""
    code = "import kubeloop.images, sys; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    assert "kubeloop.images.seed" in loaded
    assert not [m for m in loaded if m.startswith("kubeloop.cluster")]


async def test_a_missing_command_is_installed_from_its_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []

    async def install(packages: list[str], quiet: bool = False) -> None:
        asked.append(packages)

    monkeypatch.setattr(apt, "install", install)
    await apt.ensure_commands(("sh", "no-such-command-here"), quiet=True)
    assert asked == [["no-such-command-here"]]
    assert apt.missing({"sh": "dash", "no-such-command-here": "pkg"}) == ["pkg"]
