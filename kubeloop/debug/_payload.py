"""What ``kubeloop debug`` brings into a Python container: debugpy (its pure-Python wheel,
which runs on any CPython 3.8+, fetched once with pip and cached) and a sitecustomize that
starts it when the app starts, listening on the pod's loopback only (the debugger runs
any code it is asked to: it must not be reachable from the cluster's network)."""

from __future__ import annotations

import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from kubeloop.errors import KubeloopError
from kubeloop.paths import cache_dir
from kubeloop.proc import run

DEBUGPY = "debugpy==1.8.22"
# Only for attaching to a process by pid (gdb, Windows DLLs): not used, 20 MB.
LEFT_OUT = "debugpy/_vendored/pydevd/pydevd_attach_to_process/"

SITECUSTOMIZE = """\
# Written by kubeloop debug: starts debugpy in the app, on the pod's loopback only. The
# supervisor marks the app's own process (KUBELOOP_DEBUG=1); the mark is taken out here,
# so no child of the app (the debugger's adapter is one) starts a debugger of its own.
import os, sys
if os.environ.pop("KUBELOOP_DEBUG", None) == "1":
    port = int(os.environ.get("KUBELOOP_DEBUG_PORT", "5678"))
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
    folder = cache_dir() / "debug" / f"debugpy-{version}"
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
            if member.startswith("debugpy/") and not member.startswith(LEFT_OUT):
                archive.extract(member, unpacked)
    shutil.rmtree(folder, ignore_errors=True)
    unpacked.replace(folder)
    shutil.rmtree(download, ignore_errors=True)
    return folder


def files(folder: Path) -> Iterator[tuple[str, Path | bytes]]:
    """(path relative to the container's debug folder, source) for everything to send."""
    yield "sitecustomize.py", SITECUSTOMIZE.encode()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(folder).as_posix(), path


async def ensure_payload() -> list[tuple[str, Path | bytes]]:
    return list(files(await debugpy_folder()))
