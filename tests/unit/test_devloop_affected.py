"""What ``kubeloop dev`` does about a change: DevLoop.affected on the examples' real
configs, with a Session that never connects to a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeloop.cluster import ClusterInfo
from kubeloop.config import load
from kubeloop.devloop import Session
from kubeloop.devloop.dev import DevLoop
from kubeloop.kube import Kube

EXAMPLES = Path(__file__).parents[2] / "examples"


def dev_loop(example: str) -> DevLoop:
    config = load(EXAMPLES / example / "kubeloop.yaml")
    offline = Kube(api=None)  # affected() never calls the API
    return DevLoop(Session(config, ClusterInfo("test", "native", "", ""), offline))


@pytest.fixture
def stocks() -> DevLoop:
    return dev_loop("stocks")


def changed(*relative: str, example: str = "stocks") -> set[str]:
    return {str(EXAMPLES / example / path) for path in relative}


def test_a_change_in_one_build_context_rebuilds_only_that_image(stocks: DevLoop) -> None:
    assert stocks.affected(changed("generator/generator.py")) == ({"generator"}, False)
    assert stocks.affected(changed("consumer/Dockerfile")) == ({"consumer"}, False)


def test_changes_in_both_contexts_rebuild_both(stocks: DevLoop) -> None:
    paths = changed("generator/generator.py", "consumer/consumer.py")
    assert stocks.affected(paths) == ({"generator", "consumer"}, False)


def test_a_template_change_redeploys_without_a_build(stocks: DevLoop) -> None:
    assert stocks.affected(changed("templates/stocks.yaml.j2")) == (set(), True)


def test_the_config_file_itself_redeploys(stocks: DevLoop) -> None:
    assert stocks.affected(changed("kubeloop.yaml")) == (set(), True)


def test_a_build_and_a_manifest_change_together(stocks: DevLoop) -> None:
    paths = changed("generator/generator.py", "templates/stocks.yaml.j2")
    assert stocks.affected(paths) == ({"generator"}, True)


def test_nothing_changed_means_nothing_to_do(stocks: DevLoop) -> None:
    assert stocks.affected(set()) == (set(), False)


def test_relative_and_dotted_paths_count_like_absolute_ones(
    stocks: DevLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLES / "stocks")
    assert stocks.affected({"generator/../generator/generator.py"}) == ({"generator"}, False)


def test_live_synced_files_need_no_rebuild_even_inside_a_build_context() -> None:
    add = dev_loop("add")  # context ".", and app/ is synced into the container
    assert add.affected(changed("app/server.py", example="add")) == (set(), False)
    assert add.affected(changed("app", example="add")) == (set(), False)
    assert add.affected(changed("Dockerfile", example="add")) == ({"add"}, False)
    assert add.affected(changed("kubeloop.yaml", example="add")) == (set(), True)
