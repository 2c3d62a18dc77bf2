from pathlib import Path

import pytest

from kubeloop.config import load
from kubeloop.deploy.rollout import progress_of
from kubeloop.errors import KubeloopError
from kubeloop.init import detect, init_project


def test_init_writes_a_valid_project_and_keeps_existing_files(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / ".dockerignore").write_text("mine\n")
    written = init_project(tmp_path, "svc")
    assert tmp_path / ".dockerignore" not in written
    assert (tmp_path / ".dockerignore").read_text() == "mine\n"
    assert 'CMD ["python", "app.py"]' in (tmp_path / "Dockerfile").read_text()
    loaded = load(tmp_path / "kubeloop.yaml", "staging")
    assert loaded.project.namespace == "svc-staging"
    assert loaded.project.port_forward[0].local_port == 8000


def test_detection_of_languages(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"scripts": {"start": "node s.js"}}')
    assert detect(tmp_path).language == "node"
    assert 'CMD ["npm", "start"]' in detect(tmp_path).dockerfile
    (tmp_path / "go.mod").write_text("module example.com/me/tool\n\ngo 1.19\n")
    assert "/usr/local/bin/tool" in detect(tmp_path, 9000).dockerfile
    with pytest.raises(KubeloopError, match="no Python, Node or Go service"):
        detect(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_rollout_progress() -> None:
    deployment = {"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
                  "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                             "readyReplicas": 2}}  # fmt: skip
    assert progress_of(deployment) == (False, "2/2")  # an old pod still terminating
    deployment["status"]["replicas"] = 2
    assert progress_of(deployment) == (True, "2/2")
    deployment["metadata"]["generation"] = 3
    assert progress_of(deployment)[0] is False


def test_a_container_that_just_crashed_is_not_rolled_out() -> None:
    import datetime as dt

    from kubeloop.deploy.rollout import _just_crashed

    def pod(exit_code: int, seconds_ago: float) -> dict[str, object]:
        when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
        ended = {"exitCode": exit_code, "finishedAt": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return {"status": {"containerStatuses": [{"lastState": {"terminated": ended}}]}}

    assert _just_crashed(pod(3, 2))  # running again after a crash: not rolled out yet
    assert not _just_crashed(pod(0, 2))  # a clean exit (a restart on purpose)
    assert not _just_crashed(pod(3, 120))  # an old crash, stable since
    assert not _just_crashed({"status": {}})
