"""Which debugger ``kubeloop debug`` brings, from the app's command."""

from __future__ import annotations

import pytest

from kubeloop.debug._ide import vscode_config
from kubeloop.debug._languages import GO, JVM, NODE, PYTHON, app_command, detect, language
from kubeloop.debug._session import app_argv
from kubeloop.errors import KubeloopError
from kubeloop.sync.devmode import AGENT


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["python3", "server.py"], PYTHON),
        (["/usr/local/bin/python3.11", "-m", "app"], PYTHON),
        (["uvicorn", "app:api", "--port", "8000"], PYTHON),
        (["sh", "-c", "exec python -u main.py"], PYTHON),
        (["/bin/bash", "-c", "PORT=8000 env DEBUG=1 node index.js"], NODE),
        (["node", "--enable-source-maps", "dist/main.js"], NODE),
        (["java", "-jar", "/app/app.jar"], JVM),
        (["/opt/java/openjdk/bin/java", "-cp", "/app", "Server"], JVM),
        (["/server"], GO),
        (["/app/bin/api", "--listen", ":8080"], GO),
    ],
)
def test_the_language_comes_from_the_command(command: list[str], expected: object) -> None:
    assert detect(command) is expected


def test_wrappers_and_unsupported_runtimes_are_explained() -> None:
    with pytest.raises(KubeloopError, match="start the app with 'node' directly"):
        detect(["npm", "start"])
    with pytest.raises(KubeloopError, match="start the app with 'java' directly"):
        detect(["./mvnw", "spring-boot:run"])
    with pytest.raises(KubeloopError, match="pass --lang"):
        detect(["sh", "-c", ""])


def test_an_explicit_language_wins_and_unknown_ones_are_refused() -> None:
    assert language("node", ["npm", "start"]) is NODE
    assert language("auto", ["python3", "x.py"]) is PYTHON
    with pytest.raises(KubeloopError, match="unknown language 'ruby'"):
        language("ruby", ["ruby", "app.rb"])


def test_a_broken_shell_line_is_taken_as_it_is() -> None:
    assert app_command(["sh", "-c", "python 'unclosed"]) == ["sh", "-c", "python 'unclosed"]


def test_the_app_command_is_read_behind_the_supervisor() -> None:
    container = {"command": [AGENT, "supervise", "--", "node", "index.js"]}
    assert app_argv(container) == ["node", "index.js"]


def test_ide_entries_per_language() -> None:
    mappings = [("/home/me/web", "/app")]
    assert vscode_config("web", 9229, mappings, "node") == {
        "name": "kubeloop: web", "request": "attach", "type": "node", "address": "127.0.0.1",
        "port": 9229, "localRoot": "/home/me/web", "remoteRoot": "/app", "restart": True,
    }  # fmt: skip
    go = vscode_config("web", 2345, mappings, "go")
    assert go["mode"] == "remote" and go["port"] == 2345
    assert go["substitutePath"] == [{"from": "/home/me/web", "to": "/app"}]
    assert vscode_config("web", 5005, mappings, "jvm") == {
        "name": "kubeloop: web", "request": "attach", "type": "java",
        "hostName": "127.0.0.1", "port": 5005,
    }  # fmt: skip
    python = vscode_config("web", 5678, mappings)
    assert python["type"] == "debugpy"
    assert python["pathMappings"] == [{"localRoot": "/home/me/web", "remoteRoot": "/app"}]
