"""What differs between the languages ``kubeloop debug`` handles (Python, Node, Go, JVM): how the app's command
shows the language, the debugger's port in the pod, and the pod log lines that say the
debugger listens or did not start (the supervisor starts it: agent/src/debugger.go)."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from kubeloop.errors import KubeloopError


@dataclass(frozen=True)
class Language:
    name: str
    port: int  # in the pod, on its loopback (fixed in debugger.go)
    folder: str  # under the debug root: its existence turns the debugger on
    ready: str  # a log line that starts so: the debugger listens
    failed: tuple[str, ...]  # ... or did not start


PYTHON = Language("python", 5678, "python", "kubeloop debug: debugpy listens",
                  ("kubeloop debug: debugpy not started",))  # fmt: skip
NODE = Language("node", 9229, "node", "Debugger listening on ws://",
                ("Starting inspector on",))  # fmt: skip
GO = Language("go", 2345, "go", "API server listening at:",
              ("kubeloop debug: delve not started", "could not launch process"))  # fmt: skip
JVM = Language("jvm", 5005, "jvm", "Listening for transport dt_socket at address:",
               ("ERROR: transport error", "FATAL ERROR in native method: JDWP"))  # fmt: skip
LANGUAGES = {language.name: language for language in (PYTHON, NODE, GO, JVM)}

SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
PYTHON_LAUNCHERS = {"uvicorn", "gunicorn", "flask", "django-admin", "celery", "hypercorn",
                    "daphne", "pytest", "fastapi"}  # fmt: skip
NODE_WRAPPERS = {"npm", "npx", "yarn", "pnpm", "nodemon", "ts-node"}
JVM_BUILD_TOOLS = {"mvn", "mvnw", "gradle", "gradlew"}


def app_command(command: list[str]) -> list[str]:
    """The command the app really runs: through ``sh -c '...'``, ``exec`` and ``env``."""
    argv = list(command)
    while argv:
        base = os.path.basename(argv[0])
        if base in SHELLS and "-c" in argv[1:-1]:
            try:
                argv = shlex.split(argv[argv.index("-c") + 1])
            except ValueError:
                return argv
        elif base in ("exec", "env") or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            argv = argv[1:]
        else:
            return argv
    return argv


def detect(command: list[str]) -> Language:
    """The app's language, from its command: interpreters by name; anything else is taken
    for a compiled program (Go: the supervisor checks, and says so if it is not)."""
    argv = app_command(command)
    if not argv:
        raise KubeloopError("cannot tell what the container runs", "pass --lang")
    base = os.path.basename(argv[0])
    if re.fullmatch(r"python[0-9.]*", base) or base in PYTHON_LAUNCHERS:
        return PYTHON
    if base in ("node", "nodejs"):
        return NODE
    if base in NODE_WRAPPERS:
        raise KubeloopError(
            f"the app starts through {base}, which is Node itself: its inspector would take "
            "the debug port before the app's",
            "start the app with 'node' directly in the command, or pass --lang node "
            "if only one Node process runs",
        )
    if base == "java":
        return JVM
    if base in JVM_BUILD_TOOLS:
        raise KubeloopError(
            f"the app starts through {base}, a JVM itself: its debug agent would take the "
            "debug port before the app's",
            "start the app with 'java' directly in the command, or pass --lang jvm",
        )
    return GO


def language(name: str, command: list[str]) -> Language:
    """``name`` (auto, python, node or go) for the app running ``command``."""
    if name == "auto":
        return detect(command)
    try:
        return LANGUAGES[name]
    except KeyError:
        raise KubeloopError(f"unknown language {name!r}",
                            f"use one of: auto, {', '.join(LANGUAGES)}") from None  # fmt: skip
