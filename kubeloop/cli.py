"""The ``kubeloop`` command: parse arguments, call the library, print.

Only click is imported at start-up; each command imports what it needs, which keeps
``kubeloop --help`` fast.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from kubeloop.errors import KubeloopError

T = TypeVar("T")


def _run(coro: Awaitable[T]) -> T:
    """Run one library coroutine; turn our errors into a message and an exit code."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except KubeloopError as exc:
        from kubeloop.ui import console

        console().print(f"[red]error:[/red] {exc.message}", markup=True, highlight=False)
        if exc.hint:
            console().print(f"[bold]fix:[/bold] {exc.hint}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubeloop")
def main() -> None:
    """kubeloop: develop on Kubernetes — cluster, build, deploy, sync, bridge, debug."""


@main.group()
def cluster() -> None:
    """Create, inspect and delete the cluster you develop on."""


NAME = click.option("--name", default="kubeloop", show_default=True, help="Cluster name.")


@cluster.command("create")
@NAME
@click.option(
    "--provider",
    type=click.Choice(["native", "k3d", "kind", "minikube", "existing"]),
    help="Default: k3d/kind/minikube when present with Docker, else native.",
)
@click.option("--context", help="With --provider existing: the kubeconfig context to adopt.")
@click.option("--registry", help="With --provider existing: a registry the cluster pulls from.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def cluster_create(name: str, provider: str | None, context: str | None, registry: str | None,
                   quiet: bool) -> None:  # fmt: skip
    """Create a cluster (or reuse or repair the one with this name)."""
    from kubeloop.cluster import create_cluster

    info = _run(create_cluster(name, provider, context, registry, quiet))
    click.echo(f"context: {info.context}\nkubeconfig: {info.kubeconfig}")
    if info.registry:
        click.echo(f"registry: {info.registry}")


@cluster.command("delete")
@NAME
@click.option("--quiet", "-q", is_flag=True)
def cluster_delete(name: str, quiet: bool) -> None:
    """Delete a cluster and everything it left on the host."""
    from kubeloop.cluster import delete_cluster

    _run(delete_cluster(name, quiet))
    click.echo(f"cluster '{name}' deleted")


@cluster.command("status")
@NAME
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cluster_status(name: str, as_json: bool) -> None:
    """Show whether each component runs and answers; exit 1 when unhealthy."""
    from kubeloop.cluster import cluster_status as status_of

    status = _run(status_of(name))
    if as_json:
        import json
        from dataclasses import asdict

        click.echo(json.dumps(asdict(status) | {"healthy": status.healthy}, indent=2))
    else:
        from rich.table import Table

        from kubeloop.ui import console

        table = Table(title=f"cluster {name} ({status.info.provider})")
        for column in ("component", "running", "healthy", "detail"):
            table.add_column(column)
        for c in status.components:
            table.add_row(c.name, _mark(c.running), _mark(c.healthy), c.detail)
        table.add_row("node Ready", "", _mark(status.node_ready), "")
        console().print(table)
        if status.message:
            console().print(status.message)
    sys.exit(0 if status.healthy else 1)


def _mark(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


@cluster.command("kubeconfig")
@NAME
@click.option("--path", "path_only", is_flag=True, help="Print the file path, not the content.")
def cluster_kubeconfig(name: str, path_only: bool) -> None:
    """Print the cluster's kubeconfig (or its path: export KUBECONFIG=$(... --path))."""
    from pathlib import Path

    from kubeloop.cluster import get_cluster

    info = _guard(lambda: get_cluster(name))
    click.echo(info.kubeconfig if path_only else Path(info.kubeconfig).read_text(), nl=path_only)


@cluster.command("list")
def cluster_list() -> None:
    """List the clusters kubeloop knows."""
    from kubeloop.cluster import list_records

    for info in list_records():
        click.echo(f"{info.name}\t{info.provider}\t{info.context}\t{info.registry or '-'}")


@cluster.command("seed-image")
@click.argument("images", nargs=-1, required=True)
@NAME
@click.option("--quiet", "-q", is_flag=True)
def cluster_seed_image(images: tuple[str, ...], name: str, quiet: bool) -> None:
    """Make base images (e.g. python:3.11-slim) from Debian packages and push them to the
    cluster's registry, for hosts without access to a public registry."""
    from kubeloop.cluster import seed_base_image

    for image in images:
        reference = _run(seed_base_image(image, name, quiet))
        click.echo(f"{image} -> {reference}")


def _guard(call: Callable[[], T]) -> T:
    async def wrapper() -> Any:
        return call()

    return _run(wrapper())  # type: ignore[no-any-return]


if __name__ == "__main__":  # pragma: no cover
    main()
