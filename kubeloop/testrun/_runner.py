"""Running test entries: ``in: dev`` as one ``kubectl exec`` into a running container of
the workload, ``in: job`` as a Job made from the workload's pod template with the built
image; several entries at once, output streamed live with each entry's prefix."""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop.config.schema import TestEntry
from kubeloop.core import MANAGED_BY, Obj, kubectl_command
from kubeloop.errors import KubeloopError
from kubeloop.proc import spawn_tethered, stop_process
from kubeloop.testrun._output import VARIABLE, Output, new_marker, wrapped
from kubeloop.testrun._result import TestResult, verdict

if TYPE_CHECKING:  # the API client loads only for Jobs: exec needs kubectl alone
    from kubeloop.kube import Kube

OnLine = Callable[[str, str], None]  # (entry name, line)
TEST_LABEL = "kubeloop.dev/test"
TEST_OF_LABEL = "kubeloop.dev/test-of"  # not the project label: dev's log view follows that
CONTAINER = "test"
STOP_GRACE = 6.0  # seconds for the in-container script to stop the command (TERM, KILL)
KINDS = {"deployment": "Deployment", "deploy": "Deployment", "statefulset": "StatefulSet",
         "sts": "StatefulSet", "daemonset": "DaemonSet", "ds": "DaemonSet",
         "replicaset": "ReplicaSet", "rs": "ReplicaSet", "pod": "Pod", "job": "Job",
         "cronjob": "CronJob"}  # fmt: skip
# Volumes a test pod can share with the app's pods; others (claims, host paths) are left
# out with their mounts: a claim may be single-writer, and tests should not need them.
SHARED_VOLUMES = ("configMap", "secret", "projected", "emptyDir", "downwardAPI")
POD_FIELDS = ("serviceAccountName", "automountServiceAccountToken", "imagePullSecrets",
              "securityContext", "nodeSelector", "tolerations", "enableServiceLinks",
              "dnsPolicy", "dnsConfig", "hostAliases")  # fmt: skip
CONTAINER_FIELDS = ("image", "imagePullPolicy", "env", "envFrom", "workingDir",
                    "securityContext")  # fmt: skip


@dataclass
class Target:
    """Where entries run: the cluster, the project's namespace, and for Jobs an API
    client and the project's rendered objects (with the built image references)."""

    kubeconfig: str
    context: str
    namespace: str
    project: str
    kube: Kube | None = None
    objects: list[Obj] = field(default_factory=list)


def workload_kind(reference: str) -> tuple[str, str]:
    """``deployment/web`` or ``web`` → (``Deployment``, ``web``)."""
    kind, _, name = reference.rpartition("/")
    found = KINDS.get((kind or "deployment").lower())
    if found is None or not name:
        raise KubeloopError(f"test workload '{reference}' is not KIND/NAME",
                            "name it like deployment/web, statefulset/db, pod/x, or a "
                            "Deployment's name")  # fmt: skip
    return found, name


async def run_entry(entry: TestEntry, target: Target, on_line: OnLine, *, keep: bool = False,
                    env: dict[str, str] | None = None,
                    report_dir: Path | None = None) -> TestResult:  # fmt: skip
    """Run one entry to its end (or its timeout) and decide its result."""
    marker = new_marker()
    output = Output(lambda line: on_line(entry.name, line), marker if entry.junit else None)
    variables = {**entry.env, **(env or {})}
    bad = [n for n in variables if not VARIABLE.match(n)]
    if bad:
        raise KubeloopError(f"test '{entry.name}': '{bad[0]}' is not a variable name",
                            "use letters, digits and _, not starting with a digit")  # fmt: skip
    started = time.monotonic()
    if entry.in_ == "dev":
        code, timed_out, problem = await _exec(entry, target, output, variables, marker)
    else:
        code, timed_out, problem = await _job(entry, target, output, variables, marker, keep)
    result = verdict(entry.name, code, time.monotonic() - started, entry.junit,
                     bytes(output.report) if output.report is not None else None,
                     output.overflow, entry.timeout if timed_out else None, problem)  # fmt: skip
    if report_dir is not None and result.report is not None:
        # The name is the schema's [a-z0-9-]: the file stays in the folder given.
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / f"{entry.name}.xml").write_bytes(result.report)
    return result


async def run_tests(entries: list[TestEntry], target: Target, on_line: OnLine, *,
                    keep: bool = False, env: dict[str, str] | None = None,
                    report_dir: Path | None = None) -> list[TestResult]:  # fmt: skip
    """Run ``entries`` at once; results in the same order."""
    return list(await asyncio.gather(*(
        run_entry(e, target, on_line, keep=keep, env=env, report_dir=report_dir)
        for e in entries
    )))  # fmt: skip


# --- in: dev ------------------------------------------------------------------------------


async def _exec(entry: TestEntry, target: Target, output: Output, env: dict[str, str],
                marker: str) -> tuple[int, bool, str | None]:  # fmt: skip
    """``kubectl exec`` resolves the workload to a running pod itself: one process and no
    API client here, which keeps a test run close to a bare ``kubectl exec``."""
    kind, name = workload_kind(entry.workload)
    argv = [kubectl_command(), "--kubeconfig", target.kubeconfig, "--context", target.context,
            "exec", "-i", "-q", "-n", target.namespace, f"{kind.lower()}/{name}"]  # fmt: skip
    if entry.container:
        argv += ["-c", entry.container]
    argv += ["--", *wrapped(entry.command, env, entry.junit, marker, watch=True)]
    process = await spawn_tethered(*argv, stdin=asyncio.subprocess.PIPE,
                                   stdout=asyncio.subprocess.PIPE,
                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    errors = _KubectlErrors(output.on_line)
    pumps = asyncio.gather(_pump(process.stdout, output), _pump(process.stderr, errors))
    pumps.add_done_callback(_retrieved)  # however this ends, no "never retrieved" noise
    try:
        done, _ = await asyncio.wait({pumps}, timeout=entry.timeout)
        timed_out = not done
        await _stop(process, timed_out)
        await asyncio.wait({pumps}, timeout=2)  # what is still in the pipes
    finally:
        if process.returncode is None:  # cancelled: the command must not run on
            await _stop(process, True)
        pumps.cancel()
        output.close()
        errors.close()
    code = process.returncode or 0
    problem = None
    if code and not timed_out and not errors.remote_exit:
        problem = _exec_problem(entry, target, errors.last)
    return code, timed_out, problem


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _stop(process: asyncio.subprocess.Process, stop_command: bool) -> None:
    """Wait for kubectl to end; to stop the command, end its stdin first (the script in
    the container stops the command on that) and give it time before kubectl goes."""
    if stop_command and process.stdin is not None:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            pass
        await stop_process(process)
    await process.wait()


async def _pump(stream: asyncio.StreamReader, sink: Output | _KubectlErrors) -> None:
    while chunk := await stream.read(65536):
        sink.feed(chunk)


class _KubectlErrors(Output):
    """stderr of ``kubectl exec``: the command's lines go on, and kubectl's own closing
    line tells whether the command ran (``command terminated with exit code N``)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.remote_exit = False
        self.last = ""
        super().__init__(self._seen)
        self._forward = on_line

    def _seen(self, line: str) -> None:
        if line.startswith("command terminated with exit code "):
            self.remote_exit = True
            return
        if line:
            self.last = line
        self._forward(line)


def _exec_problem(entry: TestEntry, target: Target, last: str) -> str:
    where = f"{entry.workload} in namespace {target.namespace}"
    if "executable file not found" in last and '"sh"' in last:
        return (
            f"no 'sh' in the container of {where}: 'in: dev' runs the command under a "
            "shell script (use 'in: job' with an image that has one)"
        )
    if "NotFound" in last or "not found" in last:
        return f"{where} not found: deploy the project first (kubeloop deploy or dev)"
    return f"could not run in {where}: {last[:300] or 'kubectl exec failed'}"


# --- in: job ------------------------------------------------------------------------------


async def _job(entry: TestEntry, target: Target, output: Output, env: dict[str, str],
               marker: str, keep: bool) -> tuple[int, bool, str | None]:  # fmt: skip
    if target.kube is None:
        raise KubeloopError("a Job test needs a connection to the cluster")  # a caller's bug
    kube = target.kube
    job = job_object(entry, await _template(entry, target), target, env, marker)
    name = job["metadata"]["name"]
    jobs = f"/apis/batch/v1/namespaces/{target.namespace}/jobs"
    try:
        await kube.request("POST", jobs, body=job)
    except KubeloopError as exc:
        raise KubeloopError(f"test '{entry.name}': cannot create its Job: {exc.message}",
                            "deploy the project first (kubeloop deploy), or check the "
                            "namespace's quota and admission rules") from None  # fmt: skip
    output.on_line(f"job {name} created")
    timed_out = False
    code, problem = 1, None
    try:
        async with asyncio.timeout(entry.timeout):
            pod, problem = await _started(kube, target.namespace, name)
            if pod is not None:
                async for line in kube.stream_lines(
                    f"/api/v1/namespaces/{target.namespace}/pods/{pod}/log",
                    {"follow": "true", "container": CONTAINER},
                ):
                    output.feed(line.encode(errors="replace") + b"\n")
                found = await _exit_code(kube, target.namespace, pod)
                if found is None:
                    problem = f"pod {pod} went away before its test container ended"
                else:
                    code = found
    except TimeoutError:
        timed_out = True
    finally:
        output.close()
        if timed_out or not keep:
            # A timed-out Job goes even with --keep: its pod would run on.
            await kube.delete(job, grace_seconds=0)
            if timed_out:
                output.on_line(f"job {name} removed")
        else:
            output.on_line(f"job {name} kept (kubectl delete job -n {target.namespace} {name})")
    return code, timed_out, problem


async def _template(entry: TestEntry, target: Target) -> Obj:
    """The workload's pod template: from the project's render (the built images), else
    from the cluster."""
    kind, name = workload_kind(entry.workload)
    for obj in target.objects:
        if obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name:
            return pod_template(obj)
    from kubeloop.kube.workloads import find_workload

    assert target.kube is not None
    try:
        live = await find_workload(target.kube, target.namespace, f"{kind.lower()}/{name}")
    except KubeloopError as exc:
        raise KubeloopError(f"test '{entry.name}': {exc.message}",
                            "name a workload of the project's manifests or one deployed in "
                            f"namespace {target.namespace}") from None  # fmt: skip
    return pod_template(live)


def pod_template(workload: Obj) -> Obj:
    spec = workload.get("spec") or {}
    if workload.get("kind") == "Pod":
        return {"spec": spec}
    if workload.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return dict(spec.get("template") or {})


def job_object(entry: TestEntry, template: Obj, target: Target, env: dict[str, str],
               marker: str) -> Obj:  # fmt: skip
    """A Job running the entry's command with the workload's image, environment,
    ConfigMap and Secret volumes, service account and security settings; its pod has
    only kubeloop's labels, so no Service of the app sends it traffic."""
    spec = template.get("spec") or {}
    containers = spec.get("containers") or []
    chosen = next((c for c in containers if c.get("name") == entry.container), None) \
        if entry.container else (containers[0] if containers else None)  # fmt: skip
    if chosen is None:
        names = ", ".join(c.get("name", "?") for c in containers) or "none"
        raise KubeloopError(f"test '{entry.name}': {entry.workload} has no container "
                            f"'{entry.container}' (containers: {names})",
                            "fix 'container' in the test entry")  # fmt: skip
    volumes = [v for v in spec.get("volumes") or [] if any(k in v for k in SHARED_VOLUMES)]
    kept = {v.get("name") for v in volumes}
    container: Obj = {k: copy.deepcopy(chosen[k]) for k in CONTAINER_FIELDS if k in chosen}
    container |= {
        "name": CONTAINER,
        "command": wrapped(entry.command, env, entry.junit, marker, watch=False),
        "volumeMounts": [m for m in chosen.get("volumeMounts") or [] if m.get("name") in kept],
    }
    pod: Obj = {k: copy.deepcopy(spec[k]) for k in POD_FIELDS if k in spec}
    pod |= {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
            "containers": [container], "volumes": copy.deepcopy(volumes)}  # fmt: skip
    labels = {MANAGED_BY: "kubeloop", TEST_LABEL: entry.name, TEST_OF_LABEL: target.project}
    job_spec: Obj = {
        "backoffLimit": 0,
        # The cluster's own stop, should kubeloop be gone when the timeout comes.
        "activeDeadlineSeconds": int(entry.timeout) + 30,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"kl-test-{entry.name}-{secrets.token_hex(3)}",
            "namespace": target.namespace,
            "labels": labels,
        },
        "spec": job_spec,
    }


async def _started(kube: Kube, namespace: str, job: str) -> tuple[str | None, str | None]:
    """(the Job's pod once its container runs or ran, None) or (None, why it cannot)."""
    from kubeloop.deploy.rollout import FATAL_WAITING, pod_problem

    selector = f"batch.kubernetes.io/job-name={job}"
    while True:
        listing = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                     params={"labelSelector": selector})  # fmt: skip
        for pod in listing.get("items", []):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                state = status.get("state") or {}
                if "running" in state or "terminated" in state:
                    return pod["metadata"]["name"], None
                if (state.get("waiting") or {}).get("reason") in FATAL_WAITING:
                    return None, await pod_problem(kube, pod) or "the pod cannot start"
            problem = await pod_problem(kube, pod)
            if problem:
                return None, problem
        found = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}")
        for condition in ((found or {}).get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                return None, f"job {job} failed: {condition.get('message', '')}"
        if not listing.get("items"):
            refused = await _refused(kube, namespace, job)
            if refused:
                return None, refused
        await asyncio.sleep(0.2)


async def _refused(kube: Kube, namespace: str, job: str) -> str | None:
    """The Job controller's last FailedCreate event (an admission refusal), if any."""
    events = await kube.request(
        "GET", f"/api/v1/namespaces/{namespace}/events",
        params={"fieldSelector": f"involvedObject.name={job},reason=FailedCreate"},
    )  # fmt: skip
    items = events.get("items") or []
    if items:
        return f"the cluster refused the test pod: {items[-1].get('message', '')[:500]}"
    return None


async def _exit_code(kube: Kube, namespace: str, pod: str) -> int | None:
    """The test container's exit code, once the kubelet has reported it (None: the pod
    is gone, or no end was reported within 10 s)."""
    for _ in range(100):
        found = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        for status in ((found or {}).get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == CONTAINER and terminated:
                return int(terminated.get("exitCode", 1))
        if found is None:
            return None
        await asyncio.sleep(0.1)
    return None
