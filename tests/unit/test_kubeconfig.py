from pathlib import Path

import pytest
import yaml

from kubeloop.cluster import kubeconfig
from kubeloop.errors import KubeloopError


def _one(name: str) -> dict[str, object]:
    return {
        "clusters": [{"name": name, "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": f"{name}-user", "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-user"}}],
        "current-context": name,
    }


def test_merge_and_remove_touch_only_our_entries(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({**_one("work"), "apiVersion": "v1", "kind": "Config",
                                    "preferences": {"colors": True}}))  # fmt: skip
    kubeconfig.merge(path, _one("kubeloop-dev"))
    assert kubeconfig.contexts(path) == ["work", "kubeloop-dev"]
    assert yaml.safe_load(path.read_text())["current-context"] == "kubeloop-dev"
    kubeconfig.merge(path, _one("kubeloop-dev"))  # idempotent
    assert kubeconfig.contexts(path) == ["work", "kubeloop-dev"]
    kubeconfig.remove(path, "kubeloop-dev")
    data = yaml.safe_load(path.read_text())
    assert kubeconfig.contexts(path) == ["work"]
    assert [c["name"] for c in data["clusters"]] == ["work"]
    assert data["preferences"] == {"colors": True}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_broken_kubeconfig_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(KubeloopError, match="not valid YAML"):
        kubeconfig.merge(path, _one("kubeloop-dev"))
    assert path.read_text() == "clusters: [unclosed\n"
