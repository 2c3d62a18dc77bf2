"""Base images made from Debian packages, for hosts that cannot reach a public registry.

``seed_image("python:3.11-slim")`` builds a Debian root filesystem with debootstrap (the
result is cached), pushes it to the cluster's registry under the name a Dockerfile
expects (the cluster resolves Docker Hub names there), and tags it in the local Docker
engine when one runs, so ``FROM python:3.11-slim`` works offline in every builder.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubeloop import apt, ui
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, Layer, layer_from_dir, push_layers
from kubeloop.paths import cache_dir
from kubeloop.proc import run, run_streaming

SUITE = "bookworm"
# The new root's own PATH for commands run in it (the caller's may name folders that do
# not exist there, and chroot looks a command up with it).
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SeedRecipe:
    packages: tuple[str, ...]
    config: ImageConfig
    # Shell commands run inside the new root (chroot) to match the official image.
    fixups: tuple[str, ...] = ()


_DEBIAN = SeedRecipe((), ImageConfig(cmd=["bash"]))
_PYTHON = SeedRecipe(
    ("python3", "python3-pip", "python3-venv", "ca-certificates"),
    ImageConfig(cmd=["python3"], env={"LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}),
    fixups=(
        "ln -sf /usr/bin/python3 /usr/local/bin/python",
        "ln -sf /usr/bin/pip3 /usr/local/bin/pip",
        # The official image lets 'pip install' write to the system site-packages.
        "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED",
    ),
)
_NODE = SeedRecipe(
    ("nodejs", "npm", "ca-certificates"),
    ImageConfig(cmd=["node"], env={"NODE_ENV": "production"}),
)
_GOLANG = SeedRecipe(
    ("golang-1.19-go", "ca-certificates", "git"),
    ImageConfig(cmd=["bash"], env={"GOPATH": "/go", "GOTOOLCHAIN": "local"}),
    fixups=(
        "ln -sf /usr/lib/go-1.19/bin/go /usr/local/bin/go",
        "ln -sf /usr/lib/go-1.19/bin/gofmt /usr/local/bin/gofmt",
    ),
)
# Service images for compose projects (`image: redis:7`), with the entry points of the
# official images reduced to what compose files rely on.
_REDIS_ENTRYPOINT = """#!/bin/sh
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
# As the official image: reachable from other containers when no password is set.
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
"""
_REDIS = SeedRecipe(
    ("redis-server",),
    ImageConfig(cmd=["redis-server"], entrypoint=["docker-entrypoint.sh"], workdir="/data"),
    fixups=(
        f"cat > /usr/local/bin/docker-entrypoint.sh <<'EOF'\n{_REDIS_ENTRYPOINT}EOF",
        "chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /data",
    ),
)
_POSTGRES_ENTRYPOINT = """#!/bin/bash
set -e
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec runuser -u postgres -- "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  POSTGRES_USER="${POSTGRES_USER:-postgres}"
  POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$method" != trust ]; then
    echo "error: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:-postgres}" > "$pwfile"
  initdb -U "$POSTGRES_USER" --pwfile="$pwfile" -D "$PGDATA" --auth-local=trust >/dev/null
  rm -f "$pwfile"
  echo "host all all all $method" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # A socket folder of its own: health checks must not find the server before it is done.
    postgres -D "$PGDATA" -c listen_addresses= -c unix_socket_directories=/tmp &
    pid=$!
    until pg_isready -q -h /tmp; do sleep 0.2; done
    psql -q -h /tmp -U "$POSTGRES_USER" -d postgres -v ON_ERROR_STOP=1 \\
      -c "CREATE DATABASE \\"$POSTGRES_DB\\""
    kill "$pid"
    wait "$pid" || true
  fi
  echo "database initialised in $PGDATA"
fi
exec "$@"
"""
_POSTGRES = SeedRecipe(
    ("postgresql-15",),
    ImageConfig(
        cmd=["postgres"],
        entrypoint=["docker-entrypoint.sh"],
        env={
            "PATH": "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
            "/usr/bin:/sbin:/bin",
            "PGDATA": "/var/lib/postgresql/data",
            "LANG": "C.UTF-8",
        },
    ),
    fixups=(
        f"cat > /usr/local/bin/docker-entrypoint.sh <<'EOF'\n{_POSTGRES_ENTRYPOINT}EOF",
        "chmod 755 /usr/local/bin/docker-entrypoint.sh",
        # The package's own cluster (made by its postinst) is not the image's.
        "rm -rf /var/lib/postgresql/15 /etc/postgresql/15",
    ),
)
_JRE = SeedRecipe(
    ("openjdk-17-jre-headless", "ca-certificates"),
    ImageConfig(cmd=["bash"], env={"LANG": "C.UTF-8", "JAVA_HOME": "/opt/java/openjdk"}),
    fixups=("mkdir -p /opt/java && ln -s /usr/lib/jvm/java-17-openjdk-* /opt/java/openjdk",),
)
SEED_RECIPES: dict[str, SeedRecipe] = {
    "node:18-slim": _NODE,
    "node:18": _NODE,
    "golang:1.19": _GOLANG,
    "redis:7": _REDIS,
    "redis:7-bookworm": _REDIS,
    "postgres:15": _POSTGRES,
    "postgres:15-bookworm": _POSTGRES,
    "eclipse-temurin:17-jre": _JRE,
    "debian:bookworm-slim": _DEBIAN,
    "debian:bookworm": _DEBIAN,
    "debian:12-slim": _DEBIAN,
    "debian:12": _DEBIAN,
    "python:3.11-slim": _PYTHON,
    "python:3.11-slim-bookworm": _PYTHON,
    "python:3.11": _PYTHON,
    "python:3-slim": _PYTHON,
}


def is_docker_hub_name(image: str) -> bool:
    """``python:3.11-slim`` or ``me/app`` (Docker Hub), not ``registry.host/app``."""
    first = image.split("/", 1)[0]
    return "/" not in image or not ("." in first or ":" in first or first == "localhost")


def registry_reference(name: str, registry: str) -> str:
    """``python:3.11-slim`` → ``localhost:5000/library/python:3.11-slim``."""
    repository, _, tag = name.partition(":")
    if "/" not in repository:
        repository = f"library/{repository}"
    return f"{registry}/{repository}:{tag or 'latest'}"


def _apt_mirror() -> str:
    for sources in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if not sources.exists():
            continue
        for line in sources.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["URIs:"] and len(parts) > 1:
                return parts[1]
            if parts[:1] == ["deb"] and len(parts) > 2 and "security" not in parts[-2]:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


def _cached_layer(name: str) -> Layer | None:
    meta = cache_dir() / "images" / f"{name.replace(':', '_').replace('/', '_')}.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    path = Path(data["path"])
    if not path.exists() or path.stat().st_size != data["size"]:
        return None
    return Layer(path, data["digest"], data["diff_id"], data["size"])


def _store_layer(name: str, layer: Layer) -> Layer:
    folder = cache_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    key = name.replace(":", "_").replace("/", "_")
    final = folder / f"{key}.tar.gz"
    shutil.move(layer.path, final)
    stored = Layer(final, layer.digest, layer.diff_id, layer.size)
    (folder / f"{key}.json").write_text(json.dumps({
        "path": str(final), "digest": stored.digest, "diff_id": stored.diff_id,
        "size": stored.size,
    }))  # fmt: skip
    return stored


async def _apt_install(
    root: Path, packages: tuple[str, ...], on_line: Callable[[str], None]
) -> None:
    """Install ``packages`` into a fresh Debian root with apt. debootstrap's own
    ``--include`` resolver misses dependencies that apt finds (alternatives and virtual
    packages: npm's tree fails to configure that way)."""
    resolv = root / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)  # apt inside resolves the mirror like the host
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": ROOT_PATH, "LC_ALL": "C",
           "ROOT": str(root)}  # fmt: skip
    # /proc inside the root is mounted in a private mount namespace: it goes away with
    # the command, so no path of it can outlive a failure or an interruption.
    script = ('mount -t proc proc "$ROOT/proc" && chroot "$ROOT" apt-get update -q && '
              'chroot "$ROOT" apt-get install -y -q --no-install-recommends "$@" && '
              'chroot "$ROOT" apt-get clean')  # fmt: skip
    try:
        await run_streaming(["unshare", "--mount", "sh", "-c", script, "apt", *packages],
                            on_line, env=env)  # fmt: skip
    finally:
        resolv.write_text("")  # the runtime mounts its own; the host's stays out of the image


async def build_rootfs_layer(name: str, recipe: SeedRecipe, quiet: bool = False) -> Layer:
    await apt.ensure_commands(("debootstrap",), quiet=quiet)
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise KubeloopError("making a base image needs debootstrap", "apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="kubeloop-seed-", dir=cache_dir()) as work:
        root = Path(work) / "rootfs"
        # In a mount namespace of its own: the mounts debootstrap makes in the new root
        # (/proc, /sys, devices) vanish with it, however it ends, and never show on the host.
        argv = ["unshare", "--mount", debootstrap, "--variant=minbase", SUITE, str(root),
                _apt_mirror()]  # fmt: skip
        with ui.step(f"making {name} from Debian {SUITE} packages", quiet) as progress:
            await run_streaming(argv, progress.detail)
            if recipe.packages:
                await _apt_install(root, recipe.packages, progress.detail)
            for command in recipe.fixups:
                await run(["chroot", str(root), "/bin/sh", "-c", command],
                          env={"PATH": ROOT_PATH})  # fmt: skip
            await asyncio.to_thread(_remove_junk, root)
            progress.detail("packing the layer")
            # Tar and gzip of a few hundred MB: seconds of CPU, off the event loop.
            layer = await asyncio.to_thread(layer_from_dir, root, Path(work))
            return _store_layer(name, layer)


def _remove_junk(root: Path) -> None:
    """Empty the folders an image should not carry (apt's caches, runtime mounts)."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "dev", "proc", "sys", "run",
                 "tmp"):  # fmt: skip
        directory = root / junk
        if directory.exists():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


async def seed_image(name: str, registry: str, quiet: bool = False) -> str:
    """Make ``name`` available to builds and pods; return the registry reference."""
    recipe = SEED_RECIPES.get(name)
    if recipe is None:
        raise KubeloopError(
            f"kubeloop does not know how to make '{name}' from Debian packages",
            f"known base images: {', '.join(sorted(SEED_RECIPES))}",
        )
    layer = _cached_layer(name) or await build_rootfs_layer(name, recipe, quiet)
    reference = registry_reference(name, registry)
    with ui.step(f"pushing {name} to {reference}", quiet):
        await push_layers(reference, [layer], recipe.config)
    await tag_in_docker(reference, name, quiet)
    return reference


async def docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = await run([docker, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=10)
    return result.returncode == 0


async def tag_in_docker(reference: str, name: str, quiet: bool = False) -> None:
    """Put the image in the local Docker engine's store under its short name."""
    if not await docker_engine_answers():
        return
    with ui.step(f"tagging {name} in the local Docker engine", quiet):
        await run(["docker", "pull", "-q", reference], timeout=300)
        await run(["docker", "tag", reference, name])


async def rootfs_layer(name: str, recipe: SeedRecipe, quiet: bool = False) -> Layer:
    """The cached layer of ``recipe`` stored under ``name``, made once from Debian
    packages (kubeloop's own images, e.g. the in-cluster builder's, start from one)."""
    return _cached_layer(name) or await build_rootfs_layer(name, recipe, quiet)
