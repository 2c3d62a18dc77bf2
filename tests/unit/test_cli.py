"""The ``kubeloop`` command as a user meets it, through click's CliRunner: every help
page, config checks, rendering an example, and what a mistake prints and returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from kubeloop import __version__, ui
from kubeloop.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


ALL_COMMANDS = sorted(_commands(main))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real cluster records, caches or kubeconfig; and the
    console is made afresh, so it writes to the runner's stderr."""
    monkeypatch.setenv("KUBELOOP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("KUBELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setattr(ui, "_console", None)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare words, not line breaks."""
    return " ".join(text.split())


def test_the_command_tree_is_complete() -> None:
    names = {" ".join(c) for c in ALL_COMMANDS}
    assert {"cluster create", "cluster delete", "cluster status", "cluster kubeconfig",
            "cluster list", "cluster seed-image", "build", "render", "deploy", "delete",
            "dev", "sync", "reset", "init", "config schema", "config check"} <= names  # fmt: skip


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: main {' '.join(command)}" in result.output
    described = main
    for name in command:
        described = described.commands[name]  # type: ignore[attr-defined]
    assert described.help and described.help.split()[0] in result.output


def test_top_level_help_and_version() -> None:
    assert invoke("-h").exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_config_check_accepts_an_example() -> None:
    config = EXAMPLES / "stocks" / "kubeloop.yaml"
    result = invoke("config", "check", "--config", str(config), "--env", "staging")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{config}: valid (2 artifacts)\n"


def test_config_check_names_the_file_line_and_key_of_a_mistake(tmp_path: Path) -> None:
    config = tmp_path / "kubeloop.yaml"
    config.write_text("name: shop\nmanifests:\n  raw: [k8s/*.yaml]\nportForward:\n"
                      "  - resource: service/web\n    port: eighty\n")  # fmt: skip
    result = invoke("config", "check", "--config", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    message = flat(result.stderr)
    assert message.startswith(f"error: {config} is not a valid kubeloop config")
    assert "kubeloop.yaml:6: portForward.0.port: Input should be a valid integer" in message
    assert "fix:" in message


def test_a_missing_config_is_an_error_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("config", "check"), ("render",), ("build",), ("deploy",), ("dev",)):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        message = flat(result.stderr)
        assert f"error: no kubeloop.yaml in {tmp_path} or any parent folder" in message, args
        assert "fix: create one with 'kubeloop init', or pass --config PATH" in message, args
    result = invoke("config", "check", "--config", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 1
    assert f"error: cannot read {tmp_path / 'absent.yaml'}" in flat(result.stderr)


def test_an_unknown_environment_is_refused() -> None:
    result = invoke("render", "--config", str(EXAMPLES / "add" / "kubeloop.yaml"),
                    "--env", "production")  # fmt: skip
    assert result.exit_code != 0
    assert "production" in result.stderr


def test_render_prints_the_example_manifests_on_stdout() -> None:
    result = invoke("render", "--config", str(EXAMPLES / "stocks" / "kubeloop.yaml"),
                    "--env", "staging")  # fmt: skip
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == ["Deployment/consumer", "Deployment/generator", "Service/consumer",
                     "Service/generator"]  # fmt: skip
    assert {o["metadata"]["labels"]["kubeloop.dev/project"] for o in objects} == {"stocks"}
    generator = next(o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["name"] == "generator")  # fmt: skip
    assert generator["spec"]["replicas"] == 2  # the staging values


def test_cluster_commands_without_a_cluster() -> None:
    result = invoke("cluster", "list")
    assert result.exit_code == 0 and result.stdout == ""
    result = invoke("cluster", "kubeconfig", "--name", "nowhere")
    assert result.exit_code == 1
    message = flat(result.stderr)
    assert "error: no cluster named 'nowhere' (known: none)" in message
    assert "fix: create one: kubeloop cluster create" in message


def test_usage_mistakes_exit_2() -> None:
    result = invoke("sync", "-l", "app=web")  # ad hoc sync without LOCAL:REMOTE pairs
    assert result.exit_code == 2
    assert "ad hoc sync needs --selector and LOCAL:REMOTE pairs" in result.stderr
    assert invoke("cluster", "create", "--provider", "nope").exit_code == 2


def test_errors_print_exactly_their_text_without_a_traceback() -> None:
    """Brackets (a regex, a build stage, a port) are text, not Rich markup; an error
    raised while the arguments are read is told like any other."""
    result = invoke("bridge", "web", "--port", "x[0-9]", "--", "true")
    assert result.exit_code == 1
    assert "error: 'x[0-9]' is not PORT or PORT:LOCALPORT" in result.stderr
    assert "Traceback" not in result.stderr
    result = invoke("bridge", "web", "-p", "8000", "--mode", "personal", "-H", "a[b]: c", "--",
                    "true")  # fmt: skip
    assert result.exit_code == 1 and "'a[b]: c' is not a header" in result.stderr


def test_a_long_line_is_not_wrapped_in_a_log() -> None:
    """Not a terminal (CI, a pipe): a message stays on one line, whatever its length."""
    long = "x" * 300
    result = invoke("bridge", "web", "--port", long, "--", "true")
    assert f"error: '{long}' is not PORT or PORT:LOCALPORT\n" in result.stderr
