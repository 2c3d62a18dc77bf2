import os
from pathlib import Path

import pytest
import yaml

from kubeloop.cluster import kubeconfig
from kubeloop.errors import KubeloopError
from kubeloop.kube import kubeconfig as read_kubeconfig


def _one(name: str, user: str | None = None) -> dict[str, object]:
    user = user or f"{name}-user"
    return {
        "clusters": [{"name": name, "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": user, "user": {"client-certificate-data": "Q0VSVA=="}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


# A hand-written kubeconfig: comments, quotes, indented lists, its own "admin" user.
USERS_OWN = """\
# my clusters; do not lose this comment
apiVersion: v1
kind: Config
clusters:
  - name: work   # the office
    cluster:
      server: "https://work.example:6443"
users:
  - name: admin
    user:
      token: "s3cret"  # keep me
contexts:
  - name: work
    context:
      cluster: work
      user: admin
current-context: work
preferences: {colors: true}
"""


def test_merge_and_remove_touch_only_our_entries(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({**_one("work"), "apiVersion": "v1", "kind": "Config",
                                    "preferences": {"colors": True}}))  # fmt: skip
    kubeconfig.merge(path, _one("kubeloop-dev"))
    assert read_kubeconfig.contexts(path) == ["work", "kubeloop-dev"]
    assert yaml.safe_load(path.read_text())["current-context"] == "kubeloop-dev"
    kubeconfig.merge(path, _one("kubeloop-dev"))  # idempotent
    assert read_kubeconfig.contexts(path) == ["work", "kubeloop-dev"]
    kubeconfig.remove(path, "kubeloop-dev")
    data = yaml.safe_load(path.read_text())
    assert read_kubeconfig.contexts(path) == ["work"]
    assert [c["name"] for c in data["clusters"]] == ["work"]
    assert data["preferences"] == {"colors": True}


def test_a_users_admin_and_comments_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USERS_OWN)
    ours = _one("kubeloop-dev", user="kubeloop-dev")
    kubeconfig.merge(path, ours, switch=False)
    merged = path.read_text()
    assert merged.startswith(USERS_OWN.split("current-context")[0].split("users:")[0])
    assert '"s3cret"  # keep me' in merged and "# the office" in merged
    data = yaml.safe_load(merged)
    assert [u["name"] for u in data["users"]] == ["admin", "kubeloop-dev"]
    assert data["users"][0]["user"] == {"token": "s3cret"}
    assert data["current-context"] == "work"
    kubeconfig.remove(path, "kubeloop-dev")
    assert path.read_text() == USERS_OWN  # exactly what the user had


def test_switching_context_and_back_leaves_the_users_file_equal(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USERS_OWN.replace("current-context: work\n", ""))
    kubeconfig.merge(path, _one("kubeloop-dev", user="kubeloop-dev"), switch=True)
    assert yaml.safe_load(path.read_text())["current-context"] == "kubeloop-dev"
    kubeconfig.remove(path, "kubeloop-dev")
    assert path.read_text() == USERS_OWN.replace("current-context: work\n", "")


def test_owner_mode_and_symlink_are_kept(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "kubeconfig.yaml"
    real.parent.mkdir()
    real.write_text(USERS_OWN)
    real.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(real, 65534, 65534)
    before = real.stat()
    link = tmp_path / ".kube" / "config"
    link.parent.mkdir()
    link.symlink_to(real)
    kubeconfig.merge(link, _one("kubeloop-dev", user="kubeloop-dev"))
    assert link.is_symlink() and link.resolve() == real
    assert "kubeloop-dev" in real.read_text()
    after = real.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid,
                                                             before.st_gid)  # fmt: skip
    kubeconfig.remove(link, "kubeloop-dev")
    assert link.is_symlink() and "kubeloop-dev" not in real.read_text()
    assert real.stat().st_mode == before.st_mode and real.stat().st_uid == before.st_uid


def test_a_new_kubeconfig_is_private(tmp_path: Path) -> None:
    path = tmp_path / ".kube" / "config"
    kubeconfig.merge(path, _one("kubeloop-dev"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_kubeconfig.contexts(path) == ["kubeloop-dev"]


def test_an_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "config"
    kubeconfig.merge(path, _one("kubeloop-dev"))
    inode = path.stat().st_ino
    kubeconfig.merge(path, _one("kubeloop-dev"))
    kubeconfig.remove(path, "kubeloop-other")
    assert path.stat().st_ino == inode


def test_an_old_kubeloop_admin_user_goes_only_with_our_credentials(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USERS_OWN)
    kubeconfig.forget_user(path, "admin", {"client-certificate-data": "Q0VSVA=="})
    assert path.read_text() == USERS_OWN  # the user's own admin: other credentials
    kubeconfig.merge(path, _one("kubeloop-old", user="admin"), switch=False)  # as before v2
    assert [u["name"] for u in yaml.safe_load(path.read_text())["users"]] == ["admin"]
    kubeconfig.forget_user(path, "admin", {"client-certificate-data": "Q0VSVA=="})
    assert yaml.safe_load(path.read_text())["users"] == []


def test_a_broken_kubeconfig_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(KubeloopError, match="not valid YAML"):
        kubeconfig.merge(path, _one("kubeloop-dev"))
    assert path.read_text() == "clusters: [unclosed\n"
