"""Kubernetes, etcd, CoreDNS and pause binaries: from the cache, a release download, or a
build from the Go modules.

Builds use a small wrapper module per component. ``k8s.io/kubernetes`` points each
``k8s.io/<staging>`` module at ``./staging/...`` with a replace directive, and replace
directives of a dependency are ignored by Go, so the wrapper re-states them against the
published ``v0.<minor>.<patch>`` versions (etcd's server module does the same with its
sibling modules). Everything lands in the user cache directory, never in the repository.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubeloop import ui
from kubeloop.cluster.native.layout import COREDNS_VERSION, ETCD_VERSION, KUBERNETES_VERSION
from kubeloop.errors import KubeloopError
from kubeloop.files import sha256_of
from kubeloop.paths import cache_dir
from kubeloop.proc import run, run_streaming

KUBERNETES_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
ALL_SOURCES = ("cache", "download", "build")

PAUSE_MAIN = """package main

// The pod sandbox's process: hold the namespaces, reap orphans, exit on a signal.
import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		println("pause 3.10 (kubeloop)")
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	reap := make(chan os.Signal, 16)
	signal.Notify(reap, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-reap:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
"""

ETCD_MAIN = """package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""

# A CoreDNS with only the plugins a development cluster needs: the full plugin set pulls
# in every cloud SDK and triples the build time.
COREDNS_PLUGINS = (
    "reload", "bind", "ready", "health", "errors", "log", "loadbalance",
    "cache", "hosts", "kubernetes", "loop", "forward",
)  # fmt: skip
COREDNS_MAIN = (
    "package main\n\nimport (\n"
    '\t"github.com/coredns/coredns/core/dnsserver"\n'
    '\t"github.com/coredns/coredns/coremain"\n'
    + "".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"\n' for p in COREDNS_PLUGINS)
    + ")\n\n// The order is the one CoreDNS's plugin.cfg gives these plugins.\n"
    "func init() {\n\tdnsserver.Directives = []string{"
    + ", ".join(f'"{p}"' for p in COREDNS_PLUGINS)
    + "}\n}\n\nfunc main() { coremain.Run() }\n"
)


@dataclass(frozen=True)
class Component:
    """One cached set of binaries built from one Go module at one version."""

    key: str  # cache folder name
    binaries: tuple[str, ...]
    module: str
    version: str
    packages: tuple[str, ...]
    main_go: str | None = None
    ldflags: str = "-s -w"
    downloads: dict[str, tuple[str, str]] = field(default_factory=dict)
    archive: str | None = None  # a release tarball holding the binaries, with its checksum URL

    @property
    def bin_dir(self) -> Path:
        return cache_dir() / "bin" / self.key


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def components() -> list[Component]:
    arch = _arch()
    k8s_url = f"https://dl.k8s.io/release/{KUBERNETES_VERSION}/bin/linux/{arch}"
    etcd_tgz = f"etcd-{ETCD_VERSION}-linux-{arch}.tar.gz"
    etcd_url = f"https://github.com/etcd-io/etcd/releases/download/{ETCD_VERSION}"
    dns_tgz = f"coredns_{COREDNS_VERSION.lstrip('v')}_linux_{arch}.tgz"
    dns_url = f"https://github.com/coredns/coredns/releases/download/{COREDNS_VERSION}"
    return [
        Component(
            key=f"kubernetes-{KUBERNETES_VERSION}",
            binaries=KUBERNETES_BINARIES,
            module="k8s.io/kubernetes",
            version=KUBERNETES_VERSION,
            packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in KUBERNETES_BINARIES),
            ldflags=_version_ldflags(KUBERNETES_VERSION),
            downloads={b: (f"{k8s_url}/{b}", f"{k8s_url}/{b}.sha256") for b in KUBERNETES_BINARIES},
        ),
        Component(
            key=f"etcd-{ETCD_VERSION}",
            binaries=("etcd",),
            module="go.etcd.io/etcd/server/v3",
            version=ETCD_VERSION,
            packages=(".",),
            main_go=ETCD_MAIN,
            downloads={"etcd": (f"{etcd_url}/{etcd_tgz}", f"{etcd_url}/SHA256SUMS")},
            archive=etcd_tgz,
        ),
        Component(
            key=f"coredns-{COREDNS_VERSION}",
            binaries=("coredns",),
            module="github.com/coredns/coredns",
            version=COREDNS_VERSION,
            packages=(".",),
            main_go=COREDNS_MAIN,
            downloads={"coredns": (f"{dns_url}/{dns_tgz}", f"{dns_url}/{dns_tgz}.sha256")},
            archive=dns_tgz,
        ),
        # No release ships a bare pause binary: it is always built (a few seconds).
        Component(
            key="pause-3.10",
            binaries=("pause",),
            module="",
            version="3.10",
            packages=(".",),
            main_go=PAUSE_MAIN,
        ),
    ]


def binary_sources() -> tuple[str, ...]:
    """Where binaries may come from, in order; ``KUBELOOP_BINARY_SOURCES`` narrows it
    (e.g. ``cache,build`` on machines that must not reach release servers)."""
    raw = os.environ.get("KUBELOOP_BINARY_SOURCES", ",".join(ALL_SOURCES))
    sources = tuple(s.strip() for s in raw.split(",") if s.strip())
    unknown = [s for s in sources if s not in ALL_SOURCES]
    if unknown or not sources:
        raise KubeloopError(
            f"KUBELOOP_BINARY_SOURCES={raw!r} is not valid",
            f"use a comma-separated subset of {', '.join(ALL_SOURCES)}",
        )
    return sources


def cached(component: Component) -> bool:
    done = component.bin_dir / ".complete"
    return done.exists() and all((component.bin_dir / b).is_file() for b in component.binaries)


def _mark_complete(component: Component) -> None:
    sums = {b: sha256_of(component.bin_dir / b) for b in component.binaries}
    (component.bin_dir / ".complete").write_text(json.dumps(sums, indent=1))


async def ensure_binaries(quiet: bool = False) -> dict[str, Path]:
    """Return the path of every binary the native cluster runs, obtaining missing ones."""
    sources = binary_sources()
    paths: dict[str, Path] = {}
    for component in components():
        if not cached(component):
            await _obtain(component, sources, quiet)
        for name in component.binaries:
            paths[name] = component.bin_dir / name
    return paths


async def _obtain(component: Component, sources: tuple[str, ...], quiet: bool) -> None:
    errors: list[str] = []
    if "download" in sources and component.downloads:
        try:
            with ui.step(f"downloading {component.key}", quiet) as progress:
                await download_component(component, progress.detail)
            return
        except (KubeloopError, httpx.HTTPError, OSError) as exc:
            errors.append(f"download: {exc}")
            ui.warn(f"could not download {component.key} ({exc}); trying the next source")
    if "build" in sources:
        with ui.step(f"building {component.key} from Go modules", quiet) as progress:
            await build_component(component, progress.detail)
        return
    tried = "; ".join(errors) or f"sources allowed: {', '.join(sources)}"
    raise KubeloopError(
        f"{component.key} is not in the cache and could not be obtained ({tried})",
        "allow a build (KUBELOOP_BINARY_SOURCES=cache,download,build) and install Go 1.24+",
    )


# --- download -------------------------------------------------------------------------


async def download_component(component: Component, detail: Callable[[str], None]) -> None:
    """Fetch release binaries and verify each against its published SHA-256."""
    timeout = httpx.Timeout(30.0, connect=float(os.environ.get("KUBELOOP_DOWNLOAD_TIMEOUT", "4")))
    component.bin_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{component.key}-", dir=component.bin_dir.parent))
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=timeout) as client:
            for name, (url, sum_url) in component.downloads.items():
                detail(url)
                file_name = url.rsplit("/", 1)[1]
                expected = parse_checksum(await _fetch_text(client, sum_url), file_name)
                target = staging / file_name
                actual = await _fetch_file(client, url, target, detail)
                if actual != expected:
                    raise KubeloopError(
                        f"checksum mismatch for {url}: expected {expected}, got {actual}",
                        "retry; if it persists, the download is being tampered with",
                    )
                if component.archive:
                    await asyncio.to_thread(_extract_member, target, name, staging / name)
                    target.unlink()
                (staging / name).chmod(0o755)
        await asyncio.to_thread(_install, staging, component)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def parse_checksum(text: str, file_name: str) -> str:
    """Read a SHA-256 from a bare ``.sha256`` file or a ``SHA256SUMS`` listing."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) == 1:
        return lines[0][0].lower()
    for parts in lines:
        if len(parts) >= 2 and parts[-1].lstrip("*").endswith(file_name):
            return parts[0].lower()
    raise KubeloopError(f"no checksum for {file_name} in the published checksum file")


async def _fetch_text(client: httpx.AsyncClient, url: str) -> str:
    response = await client.get(url)
    response.raise_for_status()
    return response.text


async def _fetch_file(
    client: httpx.AsyncClient, url: str, target: Path, detail: Callable[[str], None]
) -> str:
    digest = hashlib.sha256()
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length", 0))
        done = 0
        with target.open("wb") as handle:
            async for chunk in response.aiter_bytes(1 << 20):
                handle.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total:
                    detail(f"{target.name} {done * 100 // total}%")
    return digest.hexdigest()


def _extract_member(archive: Path, name: str, target: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == name:
                source = tar.extractfile(member)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                return
    raise KubeloopError(f"{archive.name} has no '{name}' binary")


def _install(staging: Path, component: Component) -> None:
    """Move the binaries into the cache and record their SHA-256 (hundreds of MB: run it
    in a thread)."""
    component.bin_dir.mkdir(parents=True, exist_ok=True)
    for name in component.binaries:
        os.replace(staging / name, component.bin_dir / name)
    _mark_complete(component)


# --- build ----------------------------------------------------------------------------


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never fetch another Go toolchain behind the user's back.
    return {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}


async def build_component(component: Component, detail: Callable[[str], None]) -> None:
    go = shutil.which("go")
    if go is None:
        raise KubeloopError(
            f"{component.key} must be built from source, but Go is not installed",
            "install Go 1.24 or newer (https://go.dev/dl or 'apt-get install golang-1.24'), "
            "or put prebuilt binaries in " + str(component.bin_dir),
        )
    work = cache_dir() / "gobuild" / component.key
    work.mkdir(parents=True, exist_ok=True)
    await _write_wrapper_module(go, component, work)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    compiled = 0

    def on_line(line: str) -> None:
        nonlocal compiled
        if line.startswith("go: downloading"):
            detail(line)
        elif line and not line.startswith(("#", " ")):
            compiled += 1
            detail(f"{compiled} packages compiled ({line})")

    argv = [go, "build", "-v", "-trimpath", "-ldflags", component.ldflags, "-o", f"{out}/"]
    argv += list(component.packages)
    await run_streaming(argv, on_line, env=_go_env(), cwd=work)
    if component.packages == (".",):
        (out / work.name).rename(out / component.binaries[0]) if (
            out / work.name
        ).exists() else None
        built = next((p for p in out.iterdir() if p.is_file()), None)
        if built is None:
            raise KubeloopError(f"go build of {component.key} produced no binary")
        built.rename(out / component.binaries[0])
    await asyncio.to_thread(_install, out, component)


async def _write_wrapper_module(go: str, component: Component, work: Path) -> None:
    lines = [f"module kubeloop.local/{component.key}", "", "go 1.24.0", ""]
    # A bare module first: a broken go.mod left by an interrupted run would make every
    # go command below fail.
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    if component.module:
        lines.append(f"require {component.module} {component.version}")
        for old, new in await _published_replacements(go, component, work):
            lines.append(f"replace {old} => {new}")
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    if component.main_go:
        (work / "main.go").write_text(component.main_go)
    if component.module and component.main_go:
        # Only with our own main.go: without a Go file importing the module, tidy would
        # drop the require and the build would then resolve @latest.
        await run([go, "mod", "tidy"], env=_go_env(), cwd=work, timeout=1800)


async def _published_replacements(
    go: str, component: Component, work: Path
) -> list[tuple[str, str]]:
    """Turn the module's local-path replace directives into published versions."""
    info = await run(
        [go, "mod", "download", "-json", f"{component.module}@{component.version}"],
        env=_go_env(), cwd=work, timeout=900,
    )  # fmt: skip
    gomod = json.loads(info.stdout)["GoMod"]
    parsed = json.loads((await run([go, "mod", "edit", "-json", gomod], cwd=work)).stdout)
    return published_replacements(parsed, component.version)


def published_replacements(gomod: dict[str, object], version: str) -> list[tuple[str, str]]:
    """Pure part of the above: ``gomod`` is ``go mod edit -json`` output.

    A sibling required at ``v0.0.0`` (Kubernetes' staging modules) maps to
    ``v0.<minor>.<patch>`` of ``version``; otherwise the required version is kept.
    """
    required: dict[str, str] = {}
    for req in gomod.get("Require") or []:  # type: ignore[attr-defined]
        required[req["Path"]] = req["Version"]
    staging = "v0." + ".".join(version.lstrip("v").split(".")[1:3])
    result: list[tuple[str, str]] = []
    for rep in gomod.get("Replace") or []:  # type: ignore[attr-defined]
        path = rep["Old"]["Path"]
        if not rep["New"]["Path"].startswith(".") or path not in required:
            continue  # e.g. etcd's "=> ./FORBIDDEN_DEPENDENCY" guards
        wanted = required[path]
        result.append((path, f"{path} {staging if wanted == 'v0.0.0' else wanted}"))
    return result


def clear_failed_builds() -> None:
    """Remove partial downloads left by an interrupted run (never complete binaries)."""
    root = cache_dir() / "bin"
    if root.exists():
        for leftover in root.glob(".*-*"):
            shutil.rmtree(leftover, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m ...binaries
    print(asyncio.run(ensure_binaries()))
