"""What ``kubeloop debug`` brings into the container, per language, each debugger
listening on the pod's loopback only (a debugger runs any code it is asked to: it must not
be reachable from the cluster's network):

- Python: debugpy (its pure-Python wheel, which runs on any CPython 3.8+, fetched once
  with pip and cached) and a sitecustomize that starts it when the app starts;
- Go: Delve, built once from its Go module as a static binary for the pod's architecture
  (it runs in distroless images) and cached;
- Node and the JVM: nothing; their inspector and JDWP agent are built in."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from kubeloop.agent import go_arch
from kubeloop.debug._languages import GO, PYTHON, Language
from kubeloop.errors import KubeloopError
from kubeloop.paths import cache_dir
from kubeloop.proc import run

DEBUGPY = "debugpy==1.8.22"
DELVE = "github.com/go-delve/delve/cmd/dlv@v1.27.2"
# Windows' and macOS's parts of attaching to a process by pid: 20 MB never used in a Linux
# pod. The folder and its Linux library stay (pydevd warns at start-up without them).
ATTACH = "debugpy/_vendored/pydevd/pydevd_attach_to_process/"
LEFT_OUT = (".pdb", ".dll", ".exe", ".dylib")


def wanted(member: str) -> bool:
    if not member.startswith("debugpy/"):
        return False
    if not member.startswith(ATTACH):
        return True
    rest = member[len(ATTACH) :]
    return not rest.endswith(LEFT_OUT) and not rest.startswith(("winappdbg/", "windows/"))


SITECUSTOMIZE = """\
# Written by kubeloop debug: starts debugpy in the app, on the pod's loopback only. The
# supervisor marks the app's own process (KUBELOOP_DEBUG=1); the mark is taken out here,
# so no child of the app (the debugger's adapter is one) starts a debugger of its own.
import os, sys
if os.environ.pop("KUBELOOP_DEBUG", None) == "1":
    port = int(os.environ.get("KUBELOOP_DEBUG_PORT", "5678"))
    # Python 3.11+ freezes some stdlib modules: pydevd warns that breakpoints in them may
    # be missed, at every start; the app's own code is not frozen.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy
        debugpy.listen(("127.0.0.1", port))
        sys.stderr.write("kubeloop debug: debugpy listens on 127.0.0.1:%d\\n" % port)
    except Exception as exc:
        sys.stderr.write("kubeloop debug: debugpy not started in pid %d: %s\\n" % (os.getpid(), exc))
"""


async def debugpy_folder() -> Path:
    """debugpy, unpacked (without the attach-by-pid tools), in the cache."""
    version = DEBUGPY.split("==")[1]
    folder = cache_dir() / "debug" / f"debugpy-{version}-linux"
    if (folder / "debugpy" / "__init__.py").exists():
        return folder
    download = folder.with_name(folder.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    try:
        await run([sys.executable, "-m", "pip", "download", DEBUGPY, "--no-deps",
                   "--only-binary=:all:", "--platform", "any", "-q", "-d", str(download)],
                  timeout=300)  # fmt: skip
    except KubeloopError as exc:
        raise KubeloopError(f"cannot fetch {DEBUGPY} for the container: {exc.message}",
                            "kubeloop debug needs pip and a package index once") from exc  # fmt: skip
    wheel = next(download.glob("debugpy-*.whl"))
    unpacked = folder.with_name(folder.name + ".partial")
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if wanted(member):
                archive.extract(member, unpacked)
    shutil.rmtree(folder, ignore_errors=True)
    unpacked.replace(folder)
    shutil.rmtree(download, ignore_errors=True)
    return folder


def files(folder: Path) -> Iterator[tuple[str, Path | bytes, int]]:
    """(path relative to the container's debug folder, source, mode) for debugpy."""
    yield "sitecustomize.py", SITECUSTOMIZE.encode(), 0o644
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(folder).as_posix(), path, 0o644


async def delve_binary(arch: str) -> Path:
    """Delve for linux/``arch``, static, built once into the cache."""
    version = DELVE.rsplit("@", 1)[1]
    target = cache_dir() / "debug" / f"delve-{version}-{arch}" / "dlv"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise KubeloopError("kubeloop debug builds Delve (the Go debugger) once, but Go is "
                            "not installed", "install Go 1.24 or newer")  # fmt: skip
    work = target.with_name("bin.partial")
    shutil.rmtree(work, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if key != "GOBIN"}
    env.update(CGO_ENABLED="0", GOOS="linux", GOARCH=arch, GOTOOLCHAIN="local",
               GOFLAGS="-buildvcs=false")  # fmt: skip
    if arch == go_arch():
        env["GOBIN"], built = str(work), work / "dlv"
    else:  # go install refuses GOBIN for another platform: it goes to GOPATH/bin/linux_ARCH
        gopath = (await run([go, "env", "GOPATH"])).stdout.strip().split(os.pathsep)[0]
        built = Path(gopath) / "bin" / f"linux_{arch}" / "dlv"
    try:
        await run([go, "install", "-trimpath", "-ldflags", "-s -w", DELVE], env=env,
                  timeout=1200)  # fmt: skip
    except KubeloopError as exc:
        raise KubeloopError(f"cannot build Delve ({DELVE}): {exc.message}",
                            "kubeloop debug needs the Go module proxy once") from exc  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(built, target.with_name("dlv.partial"))
    target.with_name("dlv.partial").replace(target)
    shutil.rmtree(work, ignore_errors=True)
    return target


async def ensure_payload(language: Language, arch: str) -> list[tuple[str, Path | bytes, int]]:
    """What to write into the language's debug folder: (relative path, source, mode)."""
    if language is PYTHON:
        return list(files(await debugpy_folder()))
    if language is GO:
        return [("dlv", await delve_binary(arch), 0o755)]
    return []
