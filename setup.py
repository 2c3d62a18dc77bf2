"""The wheel's build step: the static agents for linux/amd64 and linux/arm64 go inside
the wheel (kubeloop/agent/bin/), so an installed kubeloop needs no Go at run time
(kubeloop/agent/_binary.py uses a packaged agent whose version matches its sources).

Reproducible: CGO off, -trimpath, no build id or VCS stamp, the toolchain named in the
sources' go.mod. An editable install (development) skips this and builds on first use.
Set KUBELOOP_WHEEL_AGENTS=0 to build a wheel without them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ARCHES = ("amd64", "arm64")
HERE = Path(__file__).parent


def _version_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_version", HERE / "kubeloop/agent/_version.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithAgents(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("KUBELOOP_WHEEL_AGENTS") == "0":
            return
        go = shutil.which("go")
        if go is None:
            raise SystemExit("building kubeloop's wheel needs Go 1.24+ (it compiles the agents)")
        version = _version_module()
        target = Path(self.build_lib).resolve() / "kubeloop" / "agent" / "bin"
        target.mkdir(parents=True, exist_ok=True)
        for arch in ARCHES:
            env = {**os.environ, "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": arch,
                   "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}  # fmt: skip
            out = target / version.packaged_name(version.source_version(), arch)
            subprocess.run([go, "build", "-trimpath", "-ldflags", "-s -w -buildid=",
                            "-o", str(out), "."], cwd=version.SOURCE, env=env, check=True)  # fmt: skip


setup(cmdclass={"build_py": BuildWithAgents})
