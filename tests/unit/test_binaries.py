import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeloop.cluster.native import binaries
from kubeloop.errors import KubeloopError


def test_staging_modules_map_to_published_versions() -> None:
    gomod = {
        "Require": [
            {"Path": "k8s.io/api", "Version": "v0.0.0"},
            {"Path": "go.etcd.io/etcd/client/v2", "Version": "v2.305.35"},
        ],
        "Replace": [
            {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
            {"Old": {"Path": "go.etcd.io/etcd/client/v2"}, "New": {"Path": "../client/v2"}},
            {"Old": {"Path": "go.etcd.io/tests/v3"}, "New": {"Path": "./FORBIDDEN_DEPENDENCY"}},
            {"Old": {"Path": "example.com/x"}, "New": {"Path": "example.com/y", "Version": "v1"}},
        ],
    }
    assert binaries.published_replacements(gomod, "v1.34.4") == [
        ("k8s.io/api", "k8s.io/api v0.34.4"),
        ("go.etcd.io/etcd/client/v2", "go.etcd.io/etcd/client/v2 v2.305.35"),
    ]


def test_checksum_files_of_both_shapes_are_read() -> None:
    assert binaries.parse_checksum("ABC123\n", "kubelet") == "abc123"
    listing = "111  etcd-v3.5.35-linux-amd64.tar.gz\n222  etcd-v3.5.35-linux-arm64.tar.gz\n"
    assert binaries.parse_checksum(listing, "etcd-v3.5.35-linux-arm64.tar.gz") == "222"
    with pytest.raises(KubeloopError):
        binaries.parse_checksum(listing, "other.tgz")


def test_sources_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELOOP_BINARY_SOURCES", "cache,build")
    assert binaries.binary_sources() == ("cache", "build")
    monkeypatch.setenv("KUBELOOP_BINARY_SOURCES", "cache,ftp")
    with pytest.raises(KubeloopError, match="not valid"):
        binaries.binary_sources()


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server standing in for a release site."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _component(url: str, name: str) -> binaries.Component:
    return binaries.Component(
        key="fake-v1", binaries=(name,), module="", version="v1", packages=(".",),
        downloads={name: (f"{url}/{name}", f"{url}/{name}.sha256")},
    )  # fmt: skip


async def test_download_verifies_checksums(
    release_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELOOP_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    good = hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    (tmp_path / "tool.sha256").write_text(good)
    component = _component(release_server, "tool")
    await binaries.download_component(component, lambda _: None)
    assert binaries.cached(component)
    assert (component.bin_dir / "tool").read_bytes().startswith(b"#!/bin/sh")

    (tmp_path / "bad").write_bytes(b"tampered")
    (tmp_path / "bad.sha256").write_text(good)
    with pytest.raises(KubeloopError, match="checksum mismatch"):
        await binaries.download_component(_component(release_server, "bad"), lambda _: None)
    assert not (component.bin_dir.parent / "fake-v1" / "bad").exists()
