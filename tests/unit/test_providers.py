import pytest

from kubeloop.cluster import choose_provider, provider_for
from kubeloop.cluster.external import k3d_plan, kind_plan
from kubeloop.errors import KubeloopError


def test_k3d_creates_its_registry_with_the_cluster() -> None:
    plan = k3d_plan("dev")
    assert "--registry-create" in plan.create[0]
    assert plan.context == "k3d-dev" and plan.registry == "localhost:5001"


def test_kind_wires_a_registry_into_containerd() -> None:
    plan = kind_plan("dev")
    config = plan.create[1][-1]
    assert 'mirrors."localhost:5001"' in config and "kubeloop-dev-registry:5000" in config


def test_choice_prefers_container_tools_with_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda tool: f"/usr/bin/{tool}" if tool == "kind" else None)
    assert choose_provider(docker_engine=True)[0] == "kind"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    provider, why = choose_provider(docker_engine=False)
    assert provider == "native" and "no Docker engine" in why


def test_unknown_provider_is_named() -> None:
    with pytest.raises(KubeloopError, match="unknown provider 'podman'"):
        provider_for("podman")
