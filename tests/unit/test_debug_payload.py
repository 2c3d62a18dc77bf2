"""The sitecustomize kubeloop debug puts in a container: it starts the debugger in the
app's own process only. (Its first version also ran in the debugger's adapter, a child
process, which started another adapter, and so on: a thousand processes in minutes.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubeloop.debug._payload import SITECUSTOMIZE, wanted

FAKE_DEBUGPY = """
import os
def listen(address):
    with open(os.environ["LISTENS"], "a") as out:
        out.write(f"{os.getpid()} {address[0]}:{address[1]}\\n")
"""


def test_only_the_apps_own_process_starts_a_debugger(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "debugpy.py").write_text(FAKE_DEBUGPY)
    listens = tmp_path / "listens.txt"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "KUBELOOP_DEBUG": "1",
           "LISTENS": str(listens)}  # fmt: skip
    app = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"
    subprocess.run([sys.executable, "-c", app], env=env, check=True, timeout=60)
    lines = listens.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" 127.0.0.1:5678")  # loopback only
    # Without the supervisor's mark (a process started some other way): no debugger.
    env.pop("KUBELOOP_DEBUG")
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True, timeout=60)
    assert len(listens.read_text().splitlines()) == 1


def test_only_windows_and_macos_attach_tools_are_left_out() -> None:
    attach = "debugpy/_vendored/pydevd/pydevd_attach_to_process/"
    assert wanted("debugpy/__init__.py")
    assert wanted(attach + "attach_linux_amd64.so")  # pydevd warns at start without it
    assert wanted(attach + "add_code_to_python_process.py")
    for member in ("attach_amd64.pdb", "inject_dll_x86.exe", "attach.dylib", "attach_x86.dll",
                   "winappdbg/process.py", "windows/attach.cpp"):  # fmt: skip
        assert not wanted(attach + member), member
    assert not wanted("debugpy-1.8.22.dist-info/RECORD")
