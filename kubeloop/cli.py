"""The ``kubeloop`` command: parse arguments, call the library, print.

Only click is imported at start-up (not even asyncio); each command imports what it
needs, which keeps ``kubeloop --help`` fast.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kubeloop.errors import KubeloopError

if TYPE_CHECKING:  # the library is imported when a command runs (start-up speed)
    from kubeloop.devloop.session import Session, Timings

T = TypeVar("T")


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


async def _stoppable(coro: Awaitable[T]) -> T:
    """Run ``coro`` so that SIGTERM and SIGHUP (a process manager, an IDE's stop button,
    a closed terminal) stop it the way Ctrl-C does: the task is cancelled and its clean-up
    runs (port-forwards, agent streams, dev's ``cleanup``), instead of dying on the spot."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await coro
    except asyncio.CancelledError:
        if received:
            raise _Stopped(received[0]) from None
        raise


def _run(coro: Awaitable[T]) -> T:
    """Run one library coroutine; turn our errors into a message and an exit code."""
    import asyncio

    try:
        return asyncio.run(_stoppable(coro))
    except KubeloopError as exc:
        from kubeloop.ui import error

        error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except _Stopped as stopped:
        sys.exit(128 + stopped.signum)


class _Group(click.Group):
    """Errors raised while a command reads its arguments (before _run) are told the
    same way as the others: a message, a fix, an exit code, no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KubeloopError as exc:
            from kubeloop.ui import error

            error(exc.message, exc.hint)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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

    async def seed_all() -> None:  # one event loop for all of them
        for image in images:
            click.echo(f"{image} -> {await seed_base_image(image, name, quiet)}")

    _run(seed_all())


CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Path of kubeloop.yaml (default: found from the current folder up).",
)
ENV_HELP = "Environment (profile) from kubeloop.yaml, e.g. staging."
ENV = click.option("--env", "--profile", "-p", "environment", help=ENV_HELP)
ENV_LONG = click.option("--env", "--profile", "environment", help=ENV_HELP)  # where -p is a port
CLUSTER = click.option(
    "--cluster",
    help="kubeloop cluster name (default: the project's context, else the 'kubeloop' cluster).",
)


async def _with_session(config_path: Path | None, environment: str | None, cluster: str | None,
                        action: Callable[[Session], Awaitable[T]]) -> T:  # fmt: skip
    from kubeloop.devloop import open_session

    session = await open_session(config_path, environment, cluster)
    try:
        return await action(session)
    finally:
        await session.close()


@main.command()
@CONFIG
@ENV
@CLUSTER
@click.option("--only", multiple=True, help="Build only this artifact (repeatable).")
def build(config_path: Path | None, environment: str | None, cluster: str | None,
          only: tuple[str, ...]) -> None:  # fmt: skip
    """Build the project's images (in parallel, skipping unchanged ones) and push them."""
    from kubeloop.ui import console, escape

    def show(image: str, line: str) -> None:
        console().print(f"[dim]{escape(image)} |[/dim] {escape(line)}", highlight=False)

    async def action(session: Session) -> None:
        timings = await session.build(set(only) or None, show)
        for image, reference in session.last_built.items():
            state = "built" if image in timings.built else "unchanged"
            click.echo(f"{image}: {reference} ({state})")

    _run(_with_session(config_path, environment, cluster, action))


@main.command()
@CONFIG
@ENV
@click.option(
    "--images/--no-images",
    default=False,
    help="Put the content-tagged image references in (computes tags, builds nothing).",
)
def render(config_path: Path | None, environment: str | None, images: bool) -> None:
    """Print the project's rendered manifests for an environment."""
    from kubeloop.config import load
    from kubeloop.render import render as render_objects
    from kubeloop.render import render_yaml

    async def action() -> str:
        config = load(config_path, environment)
        built: dict[str, str] = {}
        if images:
            from kubeloop.build.artifacts import reference_of
            from kubeloop.cluster import get_cluster

            registry = get_cluster().registry or "localhost:5000"
            built = {a.image: await reference_of(config, a, registry)
                     for a in config.project.artifacts}  # fmt: skip
        return render_yaml(await render_objects(config, built))

    click.echo(_run(action()), nl=False)


@main.command()
@click.argument("environments", nargs=-1, metavar="[ENV_A ENV_B | ENV --live]")
@click.option("--live", is_flag=True,
              help="Compare ENV (default: the project without overrides) with what runs "
                   "in the cluster now.")  # fmt: skip
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True)  # fmt: skip
@click.option("--config", "-f", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Path of kubeloop.yaml (default: found from the current folder up).")  # fmt: skip
@CLUSTER
def parity(environments: tuple[str, ...], live: bool, output: str, config_path: Path | None,
           cluster: str | None) -> None:  # fmt: skip
    """Show what differs between two environments (or an environment and the cluster)
    in what changes behaviour: images, commands, env, resources, replicas, probes,
    security, volumes, ConfigMap and Secret keys (Secret values masked), Service ports,
    Ingress hosts, feature flags. Exit 1 when a difference is not declared in
    'parity.ignore' of kubeloop.yaml ('parity.ignoreLive' with --live). 'default' names
    the project without overrides.

    \b
    kubeloop parity default staging
    kubeloop parity staging --live -o json
    """
    from kubeloop import parity as parity_

    if live and len(environments) > 1:
        raise click.UsageError("--live compares one environment with the cluster: "
                               "kubeloop parity [ENV] --live")  # fmt: skip
    if not live and len(environments) != 2:
        raise click.UsageError("name two environments (kubeloop parity default staging), or "
                               "one with --live")  # fmt: skip
    if live:
        env = environments[0] if environments else parity_.run.DEFAULT
        loaded = _guard(lambda: parity_.load_environment(config_path, env))

        async def against_cluster(session: Session) -> parity_.ParityReport:
            return await parity_.compare_live(session)

        report = _run(_with_session(loaded.path, loaded.environment, cluster, against_cluster))
    else:
        report = _run(parity_.compare_environments(config_path, *environments))
    if output == "json":
        click.echo(parity_.to_json(report))
    else:
        from rich.console import Console

        out = Console(highlight=False)
        if not out.is_terminal:
            out.width = max(out.width, 160)  # a CI log: rows whole rather than folded
        out.print(parity_.table(report))
    sys.exit(report.exit_code)


@main.command()
@CONFIG
@ENV
@CLUSTER
@click.option("--no-wait", is_flag=True, help="Do not wait for the rollout.")
def deploy(config_path: Path | None, environment: str | None, cluster: str | None,
           no_wait: bool) -> None:  # fmt: skip
    """Build, render and apply (server-side), prune what left, and wait for the rollout."""

    async def action(session: Session) -> Timings:
        return await session.deploy(wait=not no_wait)

    timings = _run(_with_session(config_path, environment, cluster, action))
    rebuilt = ", ".join(timings.built) or "none"
    click.echo(f"deployed (rebuilt: {rebuilt}; build {timings.build:.1f}s, apply "
               f"{timings.apply:.1f}s, rollout {timings.rollout:.1f}s)")  # fmt: skip


@main.command()
@CONFIG
@ENV
@CLUSTER
def delete(config_path: Path | None, environment: str | None, cluster: str | None) -> None:
    """Delete exactly what kubeloop deployed for this project."""

    async def action(session: Session) -> list[str]:
        return list(await session.delete())

    removed = _run(_with_session(config_path, environment, cluster, action))
    for ref in removed:
        click.echo(f"deleted {ref}")
    click.echo(f"{len(removed)} objects deleted")


@main.command()
@CONFIG
@ENV
@CLUSTER
@click.option(
    "--cleanup/--no-cleanup",
    default=None,
    help="Delete what dev deployed when it stops (default: dev.cleanup in the config).",
)
@click.option(
    "--keep/--no-keep",
    default=None,
    help="Leave dev mode's change to the workloads (process supervisor) in place when dev "
    "stops (default: dev.keepChanges; otherwise it is undone).",
)
@click.option("--verbose", "-v", is_flag=True,
              help="Print the start-up's timeline: where each phase began and ended.")  # fmt: skip
@click.option("--ui", "with_ui", is_flag=True,
              help="Serve a live web dashboard on 127.0.0.1 (its URL, with a token, is printed).")  # fmt: skip
@click.option("--ui-port", type=click.IntRange(0, 65535),
              help="The dashboard's port (implies --ui; default: a free one).")  # fmt: skip
@click.option("--debug", is_flag=True,
              help="Run each workload that dev mode wraps ('restart: process') under its "
              "debugger, forwarded here, as 'kubeloop debug' does.")  # fmt: skip
def dev(config_path: Path | None, environment: str | None, cluster: str | None,
        cleanup: bool | None, keep: bool | None, verbose: bool, with_ui: bool,
        ui_port: int | None, debug: bool) -> None:  # fmt: skip
    """Build, deploy, then watch: rebuild and redeploy what changes, with port-forwards
    and merged logs. Ctrl-C stops."""
    from kubeloop.devloop.dev import run_dev

    _run(run_dev(config_path, environment, cluster, cleanup=cleanup, keep=keep,
                 verbose=verbose, ui_port=0 if with_ui and ui_port is None else ui_port,
                 debug=debug))  # fmt: skip


@main.command(name="ui")
@click.option("--project", "-p", help="The project's dashboard, when several dev sessions run.")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
def ui_command(project: str | None, open_browser: bool) -> None:
    """Print (or open) the web dashboard's URL of a running `kubeloop dev` (one started
    without --ui opens it now)."""
    from kubeloop.dashboard import dashboard_url

    url = _run(dashboard_url(project))
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@main.command()
@CONFIG
@ENV
@CLUSTER
@click.option("--selector", "-l", help="Ad hoc: pods to sync into (label selector).")
@click.option("--namespace", "-n", help="Ad hoc: their namespace (default: default).")
@click.option("--container", "-c", help="Ad hoc: the container (default: the first).")
@click.argument("pairs", nargs=-1)
def sync(config_path: Path | None, environment: str | None, cluster: str | None,
         selector: str | None, namespace: str | None, container: str | None,
         pairs: tuple[str, ...]) -> None:  # fmt: skip
    """Keep local folders live in running containers (the project's sync rules, or
    ad hoc: kubeloop sync -l app=web LOCAL:/container/path ...). Ctrl-C stops."""
    from kubeloop.sync import Syncer, SyncRule
    from kubeloop.ui import plain

    async def ad_hoc() -> None:
        from kubeloop.cluster import get_cluster
        from kubeloop.kube import Kube

        rules = []
        for pair in pairs:
            local, sep, remote = pair.partition(":")
            if not sep or not remote.startswith("/"):
                raise KubeloopError(f"'{pair}' is not LOCAL:/absolute/container/path")
            rules.append(SyncRule(Path(local).resolve(), remote))
        info_ = get_cluster(cluster or "kubeloop")
        kube = await Kube.connect(info_.kubeconfig, info_.context)
        try:
            await Syncer(kube, info_, namespace or "default", selector or "", rules,
                         container=container, on_event=plain).run()  # fmt: skip
        finally:
            await kube.close()

    async def project(session: Session) -> None:
        import asyncio

        syncers = session.syncers(plain)
        if not syncers:
            raise KubeloopError("kubeloop.yaml has no sync rules", "add a 'sync:' section")
        await asyncio.gather(*(s.run() for s in syncers))

    if selector or pairs:
        if not (selector and pairs):
            raise click.UsageError("ad hoc sync needs --selector and LOCAL:REMOTE pairs")
        _run(ad_hoc())
    else:
        _run(_with_session(config_path, environment, cluster, project))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("workload", required=False)
@click.option("--port", "-p", "port",
              help="PORT or PORT:LOCALPORT: the container port whose traffic comes to the "
                   "command, and where the command listens (default: the same).")  # fmt: skip
@click.option("--namespace", "-n", help="Default: default (the project's, from kubeloop.yaml).")
@click.option("--container", "-c", help="Default: the pod's first container.")
@click.option("--mode", "-m", type=click.Choice(["steal", "personal", "swap"]), default="steal",
              help="steal: every connection to PORT comes here (default); personal: only "
                   "HTTP requests with --header, the rest reach the pods; swap: the app "
                   "container is replaced by kubeloop's agent while this runs.")  # fmt: skip
@click.option("--outbound", type=click.Choice(["auto", "namespace", "proxy"]), default="auto",
              help="How COMMAND reaches the cluster: its own network namespace (every "
                   "program), or proxy variables (programs that honour HTTP_PROXY/ALL_PROXY); "
                   "auto: the namespace where this machine allows it.")  # fmt: skip
@click.option(
    "--env-include",
    multiple=True,
    help="Only the pod's variables matching this pattern (repeat; e.g. 'DB_*').",
)
@click.option(
    "--env-exclude",
    multiple=True,
    help="None of the pod's variables matching this pattern (repeat).",
)
@click.option("--header", "-H", "header",
              help="personal mode: 'NAME: VALUE' routed here (default: "
                   "'X-Kubeloop-Session: <your user name>').")  # fmt: skip
@click.option(
    "--var",
    "-e",
    "env_pairs",
    multiple=True,
    help="NAME=VALUE to set or override in its environment.",
)
@CONFIG
@ENV_LONG
@CLUSTER
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def bridge(workload: str | None, port: str | None, namespace: str | None,
           container: str | None, mode: str, outbound: str, env_include: tuple[str, ...],
           env_exclude: tuple[str, ...], header: str | None,
           env_pairs: tuple[str, ...], config_path: Path | None,
           environment: str | None, cluster: str | None, command: tuple[str, ...]) -> None:  # fmt: skip
    """Run COMMAND here as if it were WORKLOAD in the cluster: new connections to the
    pods' PORT come to it, and it reaches Services by name with the pod's environment and
    mounted files (under $KUBELOOP_ROOT). No root; the pods get their traffic back at once
    when it stops, and within seconds if this machine goes away. Without WORKLOAD, the
    project's 'bridge:' entries of kubeloop.yaml run.

    \b
    kubeloop bridge deployment/web --port 8000 -- python manage.py runserver 0.0.0.0:8000
    kubeloop bridge web -p 8000 --mode personal -H 'X-Kubeloop-Session: alice' -- ./serve
    """
    import asyncio

    from kubeloop.bridge import Bridge, BridgeSpec, parse_header, parse_port
    from kubeloop.ui import plain

    if workload is None:

        async def project(session: Session) -> int:
            bridges = session.bridges(plain)
            if not bridges:
                raise KubeloopError("kubeloop.yaml has no bridge entries",
                                    "add a 'bridge:' section, or name a workload")  # fmt: skip
            codes = await asyncio.gather(*(b.run() for b in bridges))
            return int(max(codes))

        sys.exit(_run(_with_session(config_path, environment, cluster, project)))
    if not port or not command:
        raise click.UsageError("a bridge needs --port and a command: kubeloop bridge "
                               "WORKLOAD --port PORT -- COMMAND...")  # fmt: skip
    remote, local = parse_port(port)
    env = {}
    for pair in env_pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"--var {pair!r} is not NAME=VALUE")
        env[key] = value
    if header and mode != "personal":
        raise click.UsageError("--header routes requests in personal mode: add --mode personal")
    spec = BridgeSpec(workload, remote, list(command), namespace or "default", local,
                      container, env, mode=mode, outbound=outbound,
                      env_include=list(env_include), env_exclude=list(env_exclude),
                      header=parse_header(header) if header else None)  # fmt: skip

    async def action() -> int:
        from kubeloop.cluster import get_cluster
        from kubeloop.kube import Kube

        info_ = get_cluster(cluster or "kubeloop")
        kube = await Kube.connect(info_.kubeconfig, info_.context)
        try:
            return await Bridge(kube, info_, spec, on_event=plain).run()
        finally:
            await kube.close()

    sys.exit(_run(action()))


@main.command("test")
@click.argument("names", nargs=-1)
@click.option("--keep", is_flag=True, help="Leave the Jobs of 'in: job' entries in place.")
@click.option("--var", "-e", "env_pairs", multiple=True,
              help="NAME=VALUE to set in the tests' environment (repeat).")  # fmt: skip
@click.option("--junit-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Save each entry's JUnit report here as NAME.xml.")  # fmt: skip
@CONFIG
@ENV
@CLUSTER
def test(names: tuple[str, ...], keep: bool, env_pairs: tuple[str, ...],
         junit_dir: Path | None, config_path: Path | None, environment: str | None,
         cluster: str | None) -> None:  # fmt: skip
    """Run the project's 'test:' entries (NAMES, or all) in the cluster: in a running dev
    container (in: dev) or as a Job from the built image (in: job), at once, with
    prefixed output. Exits with the worst entry's code."""
    from kubeloop.testrun import report, run_project_tests, worst

    env = {}
    for pair in env_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--var {pair!r} is not NAME=VALUE")
        env[key] = value
    results = _run(run_project_tests(config_path, environment, cluster, names, keep=keep,
                                     env=env, report_dir=junit_dir))  # fmt: skip
    report(results)
    sys.exit(worst(results))


@main.command()
@CONFIG
@ENV
@CLUSTER
def reset(config_path: Path | None, environment: str | None, cluster: str | None) -> None:
    """Undo dev mode's changes to the project's workloads and any bridge's swap in its
    namespace (from the recorded originals)."""
    from kubeloop.sync.devmode import reset as reset_workloads

    async def action(session: Session) -> list[str]:
        from kubeloop import ui
        from kubeloop.bridge import reset_swaps

        restored = await reset_workloads(session.kube, session.namespace,
                                         session.config.project.name, on_skip=ui.warn)  # fmt: skip
        return restored + await reset_swaps(session.kube, session.namespace)

    restored = _run(_with_session(config_path, environment, cluster, action))
    for name in restored:
        click.echo(f"restored {name}")
    click.echo(f"{len(restored)} workloads restored")


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Project name (default: the folder's name).")
@click.option("--port", type=int, help="Port the service listens on (default per language).")
@click.option("--compose", "compose", is_flag=False, flag_value="", default=None,
              metavar="[FILE]", help="Translate a docker-compose project (default: "
              "compose.yaml or docker-compose.yml, with its override file).")  # fmt: skip
@click.option("--helm", is_flag=True, help="With --compose: a small Helm chart, not raw YAML.")
def init(directory: Path, name: str | None, port: int | None, compose: str | None,
         helm: bool) -> None:  # fmt: skip
    """Detect a Python, Node or Go service and write a Dockerfile, manifests and
    kubeloop.yaml; or, with --compose, translate a docker-compose project (existing files
    are never overwritten)."""
    if compose is not None:
        from kubeloop.compose import InitResult, init_from_compose, print_result

        if port is not None:
            raise click.UsageError("--port is for a single service; with --compose the "
                                   "ports come from the compose file")  # fmt: skip

        async def translate() -> InitResult:
            return init_from_compose(directory, compose or None, name, helm)

        print_result(_run(translate()))
        return
    if helm:
        raise click.UsageError("--helm goes with --compose")
    from kubeloop.init import init_project

    async def action() -> list[Path]:
        return init_project(directory, name, port)

    for path in _run(action()):
        click.echo(f"wrote {path}")


@main.group()
def config() -> None:
    """Inspect kubeloop.yaml."""


@config.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of kubeloop.yaml (for editor completion)."""
    import json

    from kubeloop.config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@config.command("check")
@CONFIG
@ENV
def config_check(config_path: Path | None, environment: str | None) -> None:
    """Validate kubeloop.yaml (and an environment's overrides)."""
    from kubeloop.config import load

    async def action() -> Any:
        return load(config_path, environment)

    loaded = _run(action())
    click.echo(f"{loaded.path}: valid ({len(loaded.project.artifacts)} artifacts)")


@main.command()
@click.argument("workload")
@click.option("--namespace", "-n", help="Default: the project's namespace, else default.")
@click.option("--container", "-c", help="Default: the pod's first container.")
@click.option("--port", "local_port", type=int,
              help="Local port the IDE attaches to (default: the language's usual one, "
              "5678 Python, 9229 Node, 2345 Go, 5005 JVM; 0: any free one).")  # fmt: skip
@click.option("--lang", "language", default="auto", show_default=True,
              type=click.Choice(["auto", "python", "node", "go", "jvm"]),
              help="The app's language (auto: from its command).")  # fmt: skip
@click.option(
    "--map",
    "mappings",
    multiple=True,
    help="LOCAL:REMOTE source folders for the IDE's pathMappings (repeat; default: from "
    "the project's sync rules).",
)
@click.option("--write", is_flag=True,
              help="Merge the VS Code entry into .vscode/launch.json beside kubeloop.yaml "
              "(else in the current folder); the rest of the file is kept as it is.")  # fmt: skip
@CONFIG
@ENV
@CLUSTER
def debug(workload: str, namespace: str | None, container: str | None,
          local_port: int | None, language: str, mappings: tuple[str, ...], write: bool,
          config_path: Path | None, environment: str | None,
          cluster: str | None) -> None:  # fmt: skip
    """Debug WORKLOAD's process where it runs: the debugger (Python: debugpy, Go: Delve,
    Node: its inspector, JVM: JDWP) is brought into the container (no rebuild), the app restarts
    under it in place, and its port is forwarded here for your IDE (a VS Code
    launch.json entry is printed; --write merges it into .vscode/launch.json). Ctrl-C
    removes it again. The container must run under kubeloop's supervisor ('kubeloop dev'
    with a sync rule 'restart: process')."""
    from kubeloop.config import find_config, load
    from kubeloop.debug import Debugger, DebugSpec
    from kubeloop.ui import plain

    pairs = []
    for mapping in mappings:
        local, sep, remote = mapping.rpartition(":")
        if not sep or not local or not remote.startswith("/"):
            raise click.UsageError(f"--map {mapping!r} is not LOCAL:/container/path")
        pairs.append((str(Path(local).resolve()), remote))
    spec = DebugSpec(workload, namespace or "default", container, local_port, language,
                     mappings=pairs)  # fmt: skip
    try:  # the project, when there is one, gives the namespace and the source mappings
        loaded = load(config_path or find_config(), environment)
    except KubeloopError:
        if config_path is not None or environment is not None:
            raise
    else:
        spec.namespace = namespace or loaded.project.namespace
        spec.sync, spec.project_root = list(loaded.project.sync), loaded.root
    if write:
        spec.write_launch_json = spec.project_root or Path.cwd()

    async def action() -> None:
        from kubeloop.cluster import get_cluster
        from kubeloop.kube import Kube

        info_ = get_cluster(cluster or "kubeloop")
        kube = await Kube.connect(info_.kubeconfig, info_.context)
        try:
            await Debugger(kube, info_, spec, on_event=plain).run()
        finally:
            await kube.close()

    _run(action())


def _guard(call: Callable[[], T]) -> T:
    async def wrapper() -> Any:
        return call()

    return _run(wrapper())  # type: ignore[no-any-return]


if __name__ == "__main__":  # pragma: no cover
    main()
