"""The entry point of the `redis:7` seed image: the official image's behaviour that
compose files rely on (a bare `redis-server ...` command reachable from other
containers), run with sh against a stand-in redis-server that prints its arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubeloop.images.seed import _REDIS_ENTRYPOINT, SEED_RECIPES


@pytest.fixture
def entrypoint(tmp_path: Path) -> list[str]:
    script = tmp_path / "docker-entrypoint.sh"
    script.write_text(_REDIS_ENTRYPOINT)
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    return ["env", f"PATH={fake.parent}:/usr/bin:/bin", "sh", str(script)]


@pytest.mark.parametrize(("args", "expected"), [
    (["redis-server"], "--protected-mode no"),
    (["redis-server", "--replicaof", "redis-master", "6379"],
     "--replicaof redis-master 6379 --protected-mode no"),
    (["--appendonly", "yes"], "--appendonly yes --protected-mode no"),  # flags: redis-server's
    (["redis-server", "--protected-mode", "yes"], "--protected-mode yes"),  # the user's choice
])  # fmt: skip
def test_redis_entrypoint(entrypoint: list[str], args: list[str], expected: str) -> None:
    result = subprocess.run([*entrypoint, *args], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


def test_other_commands_run_as_they_are(entrypoint: list[str]) -> None:
    result = subprocess.run([*entrypoint, "echo", "hi"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "hi"


def test_compose_service_images_are_known_to_seed_image() -> None:
    for name in ("redis:7", "postgres:15"):
        recipe = SEED_RECIPES[name]
        assert recipe.config.entrypoint == ["docker-entrypoint.sh"]
        assert any("docker-entrypoint.sh" in fixup for fixup in recipe.fixups)
