"""Running external commands from asyncio, with errors users can act on."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeloop.errors import KubeloopError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KubeloopError(f"'{name}' is not installed or not on PATH", hint)
    return path


PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int]:
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def _die_with_parent(parent: int) -> None:
    # Runs in the child between fork and exec: from then on the kernel sends it SIGTERM
    # when kubeloop ends, however it ends (a SIGKILL included). If kubeloop ended before
    # the call took effect, the child has been re-parented already: it stops itself.
    _prctl()(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


async def spawn_tethered(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start a long-lived helper (a kubectl exec stream or port-forward) that cannot
    outlive kubeloop: an orphaned port-forward would keep the developer's port taken."""
    preexec = None
    if sys.platform == "linux":
        _prctl()  # resolved before the fork, so the child only makes the call
        preexec = functools.partial(_die_with_parent, os.getpid())
    return await asyncio.create_subprocess_exec(*argv, preexec_fn=preexec, **kwargs)


async def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
) -> Result:
    """Run a command to completion and capture its output."""
    full_env = {**os.environ, **env} if env else None
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise KubeloopError(f"cannot run '{argv[0]}': not found", "install it") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(input), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise KubeloopError(f"'{' '.join(argv)}' did not finish within {timeout:.0f}s") from None
    except asyncio.CancelledError:
        await stop_process(process)
        raise
    result = Result(
        tuple(argv),
        process.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )
    if check and result.returncode != 0:
        raise command_failed(result)
    return result


async def run_streaming(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    tail: int = 30,
) -> None:
    """Run a long command, handing each output line to ``on_line`` (for progress).

    On failure the error carries the last ``tail`` lines, which is where build tools
    say what went wrong.
    """
    full_env = {**os.environ, **env} if env else None
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
    )
    assert process.stdout is not None
    last: list[str] = []
    try:
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            last = [*last[-(tail - 1) :], line]
            on_line(line)
        code = await process.wait()
    except asyncio.CancelledError:
        await stop_process(process)
        raise
    if code != 0:
        raise command_failed(Result(tuple(argv), code, "\n".join(last), ""))


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Stop a command (its caller was cancelled, or its session ended): it gets SIGTERM
    and a moment to clean up after itself, then SIGKILL. Nothing runs on unattended."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def command_failed(result: Result) -> KubeloopError:
    output = (result.stderr or result.stdout).strip()
    shown = "\n".join(output.splitlines()[-30:])
    return KubeloopError(
        f"command failed (exit {result.returncode}): {' '.join(result.argv)}\n{shown}"
    )


def port_owner(port: int) -> str:
    """Best effort: the command holding a TCP port, to put in the error message."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
                break
    if inode is None:
        return "another process"
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                pid = fd.parent.parent.name
                return f"'{Path(f'/proc/{pid}/comm').read_text().strip()}' (pid {pid})"
        except OSError:
            continue
    return "another process"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could take ``host``:``port`` now (as servers bind: with
    SO_REUSEADDR, so a connection in TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
