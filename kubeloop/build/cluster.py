"""``builder: cluster``: images built by a rootless BuildKit daemon that runs as an
unprivileged pod in the cluster and pushes straight to the cluster's registry, so the
developer's machine needs no container engine (no Docker, buildah or podman).

The pieces, each made once and cached:

* ``buildkitd`` and ``buildctl``, built from BuildKit's Go module into the cache.
* The daemon's image: a Debian root filesystem with rootlesskit, newuidmap and runc,
  plus those two binaries, pushed with kubeloop's own registry client (no Docker).
* A Deployment in ``kubeloop-system`` that runs it the way BuildKit's Kubernetes example
  runs rootless BuildKit: uid 1000, seccomp and AppArmor ``Unconfined`` so rootlesskit
  may create its user namespace, and no process sandbox, because an unprivileged pod
  cannot mount a fresh /proc. Nothing is ``privileged``. Its build cache lives on a
  volume of the pod, so it outlives builds (not the pod).

``buildctl`` runs on the developer's machine and reaches the daemon through ``kubectl
exec`` (BuildKit's ``kube-pod://`` helper, no port opened anywhere). BuildKit's file sync
sends the context; the daemon keeps the last one it received (on its cache volume), so
a rebuild sends only the files that changed since (all of them when another project
built in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubeloop import ui
from kubeloop.agent import go_arch
from kubeloop.build.relay import Relay
from kubeloop.cluster import ClusterInfo
from kubeloop.core import Obj, kubectl_command
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import (
    ImageConfig,
    Layer,
    manifest_exists,
    push_layers,
    split_reference,
)
from kubeloop.images.seed import SeedRecipe, rootfs_layer
from kubeloop.kube import Kube, KubeError
from kubeloop.paths import cache_dir
from kubeloop.proc import run, run_streaming

BUILDKIT_MODULE = "github.com/moby/buildkit"
BUILDKIT_VERSION = "v0.34.2"
BINARIES = ("buildkitd", "buildctl")
NAMESPACE = "kubeloop-system"
NAME = "kubeloop-buildkit"
CONTAINER = "buildkitd"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "kubeloop"}
SPEC_ANNOTATION = "kubeloop.dev/builder-spec"
HOME = "/home/user"
# Not under /run: base images leave /run empty, and the runtime mounts its own there.
RUNTIME_DIR = f"{HOME}/.local/run"
SOCKET = f"unix://{RUNTIME_DIR}/buildkit/buildkitd.sock"
STATE_DIR = f"{HOME}/.local/share/buildkit"
CONFIG_DIR = "/etc/kubeloop-buildkit"
# What BuildKit's rootless image holds, from Debian: rootlesskit makes the user
# namespace (newuidmap/newgidmap from uidmap map the subordinate ids), runc runs steps.
BASE_RECIPE = SeedRecipe(
    ("rootlesskit", "uidmap", "runc", "ca-certificates"),
    ImageConfig(),
    fixups=(
        "useradd --uid 1000 --user-group --create-home --shell /bin/sh user",
        f"mkdir -p {RUNTIME_DIR} {HOME}/.local/tmp {STATE_DIR} && chown -R 1000:1000 {HOME} "
        f"&& chmod 700 {RUNTIME_DIR}",
        "echo user:100000:65536 > /etc/subuid && echo user:100000:65536 > /etc/subgid",
    ),
)
# The cached layer is found by name: the name changes with the recipe.
BASE_NAME = "kubeloop-buildkit-base-" + hashlib.sha256(repr(BASE_RECIPE).encode()).hexdigest()[:8]
RELAY_PORT = 15000  # where the builder reaches a loopback-only registry (relay.py)
OUTPUT_LIMIT = 60  # lines of a failed step shown in the error

OnLine = Callable[[str], None]

_locks: dict[str, asyncio.Lock] = {}
_relays: dict[str, Relay] = {}


def _relay(upstream: str) -> Relay:
    """This process's relay to ``upstream`` (one password, shared by its builds)."""
    return _relays.setdefault(upstream, Relay(RELAY_PORT, upstream))


def _locked(what: str) -> asyncio.Lock:
    """One lock per thing made once (binaries, the builder): parallel builds wait for
    the first to make it. Separate locks, since making the builder needs the binaries."""
    return _locks.setdefault(what, asyncio.Lock())


# -- binaries and image ----------------------------------------------------------------


def binaries_dir() -> Path:
    return cache_dir() / "bin" / f"buildkit-{BUILDKIT_VERSION}"


async def buildkit_binaries(quiet: bool = True) -> Path:
    """The folder holding ``buildkitd`` and ``buildctl`` (static, for this machine),
    built from BuildKit's Go module the first time (minutes on two cores)."""
    folder = binaries_dir()
    if all((folder / b).is_file() for b in BINARIES):
        return folder
    async with _locked("binaries"):
        if not all((folder / b).is_file() for b in BINARIES):
            await _build_binaries(folder, quiet)
    return folder


async def _build_binaries(folder: Path, quiet: bool) -> None:
    go = shutil.which("go")
    if go is None:
        raise KubeloopError(f"builder: cluster needs BuildKit {BUILDKIT_VERSION}, built once "
                            "from its Go module, but Go is not installed",
                            "install Go 1.21 or newer (it fetches the Go toolchain BuildKit "
                            "needs through the module proxy), or use another builder: "
                            "docker, buildah or podman")  # fmt: skip
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    with ui.step(f"building BuildKit {BUILDKIT_VERSION} from its Go module (once, a few "
                 "minutes)", quiet) as progress:  # fmt: skip
        found = await run([go, "mod", "download", "-json", f"{BUILDKIT_MODULE}@{BUILDKIT_VERSION}"],
                          env=env, timeout=1800)  # fmt: skip
        source = Path(json.loads(found.stdout)["Dir"])
        # Built as the main module, in its own (read-only) folder: its go.mod has exclude
        # directives, which `go install module@version` refuses and a wrapper would lose.
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        version = f"-X {BUILDKIT_MODULE}/version.Version={BUILDKIT_VERSION}"
        await run_streaming([go, "build", "-trimpath", f"-ldflags=-s -w {version}",
                             "-tags=osusergo netgo static_build", "-o", f"{partial}/",
                             *(f"./cmd/{b}" for b in BINARIES)],
                            progress.detail, env=env, cwd=source)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)


def _image_env() -> dict[str, str]:
    return {"HOME": HOME, "USER": "user", "XDG_RUNTIME_DIR": RUNTIME_DIR,
            "TMPDIR": f"{HOME}/.local/tmp", "BUILDKIT_HOST": SOCKET}  # fmt: skip


# newuidmap and newgidmap with file capabilities instead of Debian's setuid bit: run
# setuid-root, they open the map file as root, and the kernel then wants CAP_SYS_ADMIN,
# which no unprivileged pod has; with a capability the owner of the namespace writes it
# (BuildKit's own image relies on the same). VFS_CAP_REVISION_2 | effective, permitted.
_FILE_CAPS = {"newuidmap": 7, "newgidmap": 6}  # CAP_SETUID, CAP_SETGID


def _vfs_cap(capability: int) -> bytes:
    return struct.pack("<IIIII", 0x02000001, 1 << capability, 0, 0, 0)


def top_layer(binaries: Path, base: Layer, work: Path) -> Layer:
    """The layer over the Debian base: BuildKit's binaries, and the id-mapping tools
    again with file capabilities (a PAX xattr record, which runtimes apply)."""
    raw = work / "top.tar"
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in BINARIES:
            info = tar.gettarinfo(str(binaries / name), f"usr/local/bin/{name}")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with (binaries / name).open("rb") as handle:
                tar.addfile(info, handle)
        with tarfile.open(base.path, "r:gz") as lower:
            for name, capability in _FILE_CAPS.items():
                member = lower.getmember(f"usr/bin/{name}")
                source = lower.extractfile(member)
                assert source is not None
                member.mode = 0o755
                value = _vfs_cap(capability).decode("utf-8", "surrogateescape")
                member.pax_headers = {"SCHILY.xattr.security.capability": value}
                tar.addfile(member, source)
    diff = hashlib.sha256()
    packed = work / "top.tar.gz"
    with raw.open("rb") as source, gzip.GzipFile(packed, "wb", compresslevel=1, mtime=0) as gz:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            diff.update(chunk)
            gz.write(chunk)
    raw.unlink()
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    return Layer(packed, f"sha256:{digest}", f"sha256:{diff.hexdigest()}", packed.stat().st_size)


async def builder_image(registry: str, registry_for_pods: str | None = None,
                        quiet: bool = True) -> str:  # fmt: skip
    """The builder's image in the cluster's registry (pushed once per BuildKit version
    and base); the reference pods use."""
    binaries = await buildkit_binaries(quiet)
    base = await rootfs_layer(BASE_NAME, BASE_RECIPE, quiet)
    key = f"{BUILDKIT_VERSION}|{base.digest}|{BASE_RECIPE}|{_FILE_CAPS}|{_image_env()}"
    path = f"kubeloop/buildkit:{BUILDKIT_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not await manifest_exists(f"{registry}/{path}"):
        with ui.step("pushing the in-cluster builder's image", quiet), \
                tempfile.TemporaryDirectory(prefix="kubeloop-buildkit-", dir=cache_dir()) as work:  # fmt: skip
            # Tar and gzip of ~80 MB of binaries: CPU work, off the event loop.
            layer = await asyncio.to_thread(top_layer, binaries, base, Path(work))
            # Built for this machine, which runs the native cluster's node.
            config = ImageConfig(entrypoint=["rootlesskit", "buildkitd"], env=_image_env(),
                                 user="1000:1000", workdir=HOME,
                                 architecture=go_arch())  # fmt: skip
            await push_layers(f"{registry}/{path}", [base, layer], config)
    return f"{registry_for_pods or registry}/{path}"


# -- the daemon in the cluster ---------------------------------------------------------


def _is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry
    return host in ("localhost", "[::1]") or host.startswith("127.")


def builder_registry(registry: str) -> str:
    """How the builder names the registry (as pods do), or kubeloop's relay to it when
    it listens on the node's loopback (only root may connect there; see relay.py)."""
    return f"127.0.0.1:{RELAY_PORT}" if _is_loopback(registry) else registry


def buildkitd_toml(registry: str) -> str:
    """Docker Hub names resolve to the cluster's registry (where 'kubeloop cluster
    seed-image' puts base images), as they do for the cluster's own pulls."""
    registry = builder_registry(registry)
    return (
        "[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n"
        f'[registry."docker.io"]\n  mirrors = ["{registry}"]\n'
        f'[registry."{registry}"]\n  http = true\n'
    )


def builder_objects(image: str, registry: str, namespace: str = NAMESPACE) -> list[Obj]:
    """The ConfigMap and Deployment of the builder. ``registry`` is the registry as pods
    name it; one on the node's loopback is only reachable from the node's network, so
    the pod then shares it (hostNetwork), the one thing beyond BuildKit's example."""
    toml = buildkitd_toml(registry)
    host_network = _is_loopback(registry)
    digest = hashlib.sha256(f"{image}|{toml}|{host_network}".encode()).hexdigest()[:16]
    metadata = {"name": NAME, "namespace": namespace, "labels": LABELS}
    security = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                "seccompProfile": {"type": "Unconfined"},
                "appArmorProfile": {"type": "Unconfined"}}  # fmt: skip
    probe = {"exec": {"command": ["buildctl", "debug", "workers"]},
             "periodSeconds": 2, "timeoutSeconds": 10, "failureThreshold": 3}  # fmt: skip
    pod_spec: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"fsGroup": 1000},
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": [
                    "--addr",
                    SOCKET,
                    "--oci-worker-no-process-sandbox",
                    "--config",
                    f"{CONFIG_DIR}/buildkitd.toml",
                ],
                "securityContext": security,
                "readinessProbe": probe,
                "volumeMounts": [
                    {"name": "cache", "mountPath": STATE_DIR},
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "cache", "emptyDir": {}},
            {"name": "config", "configMap": {"name": NAME}},
        ],
    }
    if host_network:
        pod_spec |= {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {"buildkitd.toml": toml},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one daemon owns the cache volume
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS, "annotations": {SPEC_ANNOTATION: digest}},
                    "spec": pod_spec,
                },
            },
        },
    ]


def refused_error(namespace: str, message: str) -> KubeloopError:
    return KubeloopError(
        f"the cluster refused the in-cluster builder's pod in namespace {namespace}: {message}",
        "rootless BuildKit needs seccomp and AppArmor 'Unconfined' (so it may create a user "
        "namespace; it is not privileged), and hostNetwork when the registry listens on the "
        f"node's loopback: allow them in {namespace} (e.g. label it "
        "pod-security.kubernetes.io/enforce=privileged), or use builder: docker",
    )


def _pod_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _selector() -> str:
    return ",".join(f"{k}={v}" for k, v in LABELS.items())


async def _pods(kube: Kube, namespace: str) -> list[Obj]:
    listing = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                 params={"labelSelector": _selector()})  # fmt: skip
    return list(listing.get("items") or [])


def _why_not_ready(pods: list[Obj], deployment: Obj | None) -> str:
    """What the cluster says about a builder that does not come up."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message", ""))
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            state = status.get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
            last = (status.get("lastState") or {}).get("terminated") or {}
            if last:
                return f"the daemon exited ({last.get('reason', '')}, code " \
                       f"{last.get('exitCode')}): {last.get('message', '')}"  # fmt: skip
    return "no pod is ready yet"


async def _replica_failure(kube: Kube, namespace: str) -> str | None:
    """The ReplicaSet's refusal to create the pod (admission), if there is one."""
    listing = await kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets",
                                 params={"labelSelector": _selector()})  # fmt: skip
    for replicaset in listing.get("items") or []:
        for condition in (replicaset.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                return str(condition.get("message", ""))
    return None


@dataclass(frozen=True)
class Builder:
    """A ready builder pod, and how ``buildctl`` reaches it."""

    pod: str
    uid: str
    namespace: str
    restarts: int = 0

    def address(self, context: str) -> str:
        return f"kube-pod://{self.pod}?namespace={self.namespace}&context={context}" \
               f"&container={CONTAINER}"  # fmt: skip


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


async def ensure_builder(cluster: ClusterInfo, kube: Kube, namespace: str = NAMESPACE,
                         quiet: bool = True, timeout: float = 180) -> Builder:  # fmt: skip
    """A ready BuildKit pod in ``namespace``: created or updated when needed, reused
    when it runs (the cost then is one Deployment and one pod list)."""
    from kubeloop.deploy.apply import ensure_namespace

    if not cluster.registry:
        raise KubeloopError(f"cluster '{cluster.name}' has no registry for the builder to "
                            "push to", "use a kubeloop-created cluster, or adopt one with "
                            "--registry")  # fmt: skip
    registry_for_pods = cluster.registry_for_pods or cluster.registry
    async with _locked("builder"):
        image = await builder_image(cluster.registry, registry_for_pods, quiet)
        objects = builder_objects(image, registry_for_pods, namespace)
        wanted = objects[1]["spec"]["template"]["metadata"]["annotations"][SPEC_ANNOTATION]
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}"
        current = await kube.get(path)
        annotations = (((current or {}).get("spec") or {}).get("template") or {}).get(
            "metadata", {}).get("annotations") or {}  # fmt: skip
        if annotations.get(SPEC_ANNOTATION) != wanted:
            with ui.step("starting the in-cluster builder (rootless BuildKit)", quiet):
                await ensure_namespace(kube, namespace)
                await _admission_check(kube, namespace, objects[1])
                for obj in objects:
                    await kube.apply(obj, namespace)
        return await _ready_pod(kube, namespace, wanted, timeout)


async def _admission_check(kube: Kube, namespace: str, deployment: Obj) -> None:
    """Ask admission about the pod before the Deployment exists: a refusal then comes
    back as an error here, not as a ReplicaSet that silently makes no pod."""
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": f"{NAME}-", "namespace": namespace,
                        "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}  # fmt: skip
    try:
        await kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod,
                           params={"dryRun": "All"})  # fmt: skip
    except KubeError as exc:
        if exc.status in (400, 403, 422):
            raise refused_error(namespace, exc.message) from exc
        raise


async def _ready_pod(kube: Kube, namespace: str, spec: str, timeout: float) -> Builder:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pods: list[Obj] = []
    while loop.time() < deadline:
        pods = await _pods(kube, namespace)
        for pod in pods:
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if annotations.get(SPEC_ANNOTATION) == spec and _pod_ready(pod):
                meta = pod["metadata"]
                return Builder(meta["name"], meta["uid"], namespace, _restarts(pod))
        if not pods and (failure := await _replica_failure(kube, namespace)):
            raise refused_error(namespace, failure)
        if broken := [p for p in pods if _stuck(p)]:  # no point waiting: say why now
            raise await _not_ready(kube, namespace, broken, timeout=None)
        await asyncio.sleep(0.25)
    raise await _not_ready(kube, namespace, pods, timeout)


def _stuck(pod: Obj) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                      "CreateContainerError", "CreateContainerConfigError"):  # fmt: skip
            return True
    return False


async def _not_ready(kube: Kube, namespace: str, pods: list[Obj],
                     timeout: float | None) -> KubeloopError:  # fmt: skip
    deployment = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}")
    why = _why_not_ready(pods, deployment)
    logs = ""
    for pod in pods[:1]:
        with contextlib.suppress(KubeloopError):
            answer = await kube.request(
                "GET", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log",
                params={"container": CONTAINER, "previous": "true", "tailLines": "8"})  # fmt: skip
            text = str(answer.get("text", ""))
            logs = "\n".join(f"    {line[:300]}" for line in text.splitlines()[-8:])
    when = f" in {timeout:.0f}s" if timeout else ""
    return KubeloopError(f"the in-cluster builder did not become ready{when}: {why}"
                         + (f"\n  its last output:\n{logs}" if logs else ""),
                         f"see 'kubectl -n {namespace} describe pod -l "
                         f"app.kubernetes.io/name={NAME}' and its logs")  # fmt: skip


async def builder_changed(kube: Kube, builder: Builder) -> bool:
    """Whether the pod a build used went away or its daemon restarted since."""
    pod = await kube.get(f"/api/v1/namespaces/{builder.namespace}/pods/{builder.pod}")
    if pod is None or pod["metadata"].get("uid") != builder.uid:
        return True
    return bool(pod["metadata"].get("deletionTimestamp")) or _restarts(pod) != builder.restarts


# -- a build ---------------------------------------------------------------------------

_STEP = re.compile(r"^#(\d+) (.*)$")
_SIZE = re.compile(r"transferring (?:context|dockerfile): ([\d.]+)([kMG]?B)")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


@dataclass
class Progress:
    """What BuildKit's plain progress output says about a build (parsed as it streams)."""

    names: dict[str, str] = field(default_factory=dict)  # step number → its name
    output: dict[str, list[str]] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)  # step names served from the cache
    context_bytes: dict[str, int] = field(default_factory=dict)  # step → bytes sent
    failed: tuple[str, str] | None = None  # (step number, error)
    tail: list[str] = field(default_factory=list)  # lines not belonging to a step

    def feed(self, line: str) -> None:
        found = _STEP.match(line)
        if found is None:
            self.tail = [*self.tail[-(OUTPUT_LIMIT - 1) :], line]
            return
        number, text = found[1], found[2]
        if number not in self.names:
            self.names[number] = text
            return
        if text == "CACHED":
            self.cached.add(self.names[number])
        elif text.startswith("ERROR:") and self.failed is None:
            self.failed = (number, text.removeprefix("ERROR:").strip())
        elif size := _SIZE.search(text):
            bytes_ = int(float(size[1]) * _UNITS[size[2]])
            self.context_bytes[number] = max(self.context_bytes.get(number, 0), bytes_)
        else:
            lines = self.output.setdefault(number, [])
            lines[:] = [*lines[-(OUTPUT_LIMIT - 1) :], text]

    @property
    def context_sent(self) -> int:
        """Bytes of build context sent (the largest transfer reported per local)."""
        return sum(self.context_bytes.values())

    def failure(self) -> KubeloopError | None:
        if self.failed is None:
            return None
        number, error = self.failed
        step = self.names.get(number, f"#{number}")
        shown = [re.sub(r"^\d+\.\d+ ", "", line) for line in self.output.get(number, [])]
        detail = "\n".join(f"    {line}" for line in shown) or "    (the step printed nothing)"
        if step.startswith("[internal] load metadata for "):
            image = step.removeprefix("[internal] load metadata for ")
            return KubeloopError(f"the in-cluster build cannot find the base image {image}: "
                                 f"{error}", "make it available in the cluster's registry: "
                                 "kubeloop cluster seed-image NAME (e.g. python:3.11-slim)")  # fmt: skip
        return KubeloopError(f"the build failed at step {step}: {error}\n  its output:\n{detail}",
                             "fix that step (or what it runs) in the Dockerfile")  # fmt: skip


@dataclass(frozen=True)
class ClusterBuild:
    reference: str
    cached_steps: tuple[str, ...]  # names of the steps served from the builder's cache
    context_bytes: int  # build context sent to the builder (changed files only, after the
    # first build of a context)
    seconds: float


def buildctl_argv(buildctl: Path, address: str, context: Path, dockerfile: Path,
                  reference: str, build_args: Mapping[str, str],
                  no_cache: bool = False, target: str | None = None) -> list[str]:  # fmt: skip
    """The build, as ``buildctl`` arguments (plain progress: the steps, their output,
    what was cached, how much context was sent)."""
    return [
        str(buildctl), "--addr", address, "build", "--progress=plain",
        "--frontend=dockerfile.v0",
        "--local", f"context={context}", "--local", f"dockerfile={dockerfile.parent}",
        "--opt", f"filename={dockerfile.name}",
        *(a for k, v in sorted(build_args.items()) for a in ("--opt", f"build-arg:{k}={v}")),
        *(["--opt", f"target={target}"] if target else []),
        # Docker's manifest types, as the other builders push: kubeloop's registry client
        # asks for them to tell whether a content tag is built already.
        "--output", f"type=image,name={reference},push=true,oci-mediatypes=false",
        *(["--no-cache"] if no_cache else []),
    ]  # fmt: skip


async def build_in_cluster(
    cluster: ClusterInfo,
    context: Path,
    reference: str,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    on_line: OnLine = lambda _l: None,
    namespace: str = NAMESPACE,
    quiet: bool = True,
    no_cache: bool = False,
    target: str | None = None,
) -> ClusterBuild:
    """Build ``context`` with the in-cluster builder and push it as ``reference`` (the
    registry part as the cluster's pods name it)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    context = context.resolve()
    if not (context / dockerfile).is_file():
        raise KubeloopError(f"no {dockerfile} in {context}",
                            "fix 'context' or 'dockerfile' in kubeloop.yaml")  # fmt: skip
    kube = await Kube.connect(cluster.kubeconfig, cluster.context)
    try:
        builder = await ensure_builder(cluster, kube, namespace, quiet)
        buildctl = (await buildkit_binaries(quiet)) / "buildctl"
        relay = None
        registry, repository, tag = split_reference(reference)
        if _is_loopback(registry):
            relay = _relay(cluster.registry or registry)
            reference = f"{relay.address}/{repository}:{tag}"
        argv = buildctl_argv(buildctl, builder.address(cluster.context), context,
                             context / dockerfile, reference, build_args or {},
                             no_cache, target)  # fmt: skip
        # The kube-pod:// helper runs `kubectl exec`: kubeloop's kubectl, this cluster.
        kubectl = Path(kubectl_command()).parent
        env = {"KUBECONFIG": cluster.kubeconfig,
               "PATH": f"{kubectl}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
        progress = Progress()

        def line(text: str) -> None:
            progress.feed(text)
            on_line(text)

        try:
            await _run_build(argv, env, line, relay)
        except KubeloopError as exc:
            # First: a step cut short by the daemon's end reports an error of its own.
            if await builder_changed(kube, builder):
                raise KubeloopError(
                    f"the in-cluster builder (pod {builder.pod}) restarted during the build",
                    "build again: kubeloop waits for the new builder (its cache is empty "
                    "when the pod was replaced)",
                ) from exc
            if (failed := progress.failure()) is not None:
                raise failed from None
            raise _other_failure(progress, exc) from exc
    finally:
        await kube.close()
    return ClusterBuild(f"{registry}/{repository}:{tag}", tuple(sorted(progress.cached)), progress.context_sent,
                        loop.time() - started)  # fmt: skip


async def _run_build(argv: list[str], env: dict[str, str], on_line: OnLine,
                     relay: Relay | None) -> None:  # fmt: skip
    if relay is None:
        await run_streaming(argv, on_line, env=env)
        return
    async with relay.running():
        with relay.docker_config() as docker_config:
            await run_streaming(argv, on_line, env={**env, "DOCKER_CONFIG": docker_config})


def _other_failure(progress: Progress, exc: KubeloopError) -> KubeloopError:
    text = "\n".join(progress.tail[-20:]) or exc.message
    if "docker.io" in text and ("not found" in text or "failed to resolve" in text):
        return KubeloopError(f"the in-cluster build could not find a base image:\n{text}",
                             "make it available: kubeloop cluster seed-image NAME")  # fmt: skip
    return KubeloopError(f"the in-cluster build failed:\n{text}")


def pod_registry(cluster: ClusterInfo, reference: str) -> str:
    """``reference`` with the registry named as the cluster's pods (and so the builder)
    reach it."""
    registry, repository, tag = split_reference(reference)
    pods = cluster.registry_for_pods or registry
    return f"{pods}/{repository}:{tag}"


def cluster_of_registry(registry: str) -> ClusterInfo:
    """The recorded cluster whose registry is ``registry`` (builds know the registry
    they push to; the builder also needs the cluster's API)."""
    from kubeloop.cluster import list_records

    matches = [c for c in list_records() if registry in (c.registry, c.registry_for_pods)]
    if not matches:
        raise KubeloopError(f"builder: cluster found no kubeloop cluster whose registry is "
                            f"{registry}", "create one with 'kubeloop cluster create', or "
                            "adopt yours with 'kubeloop cluster adopt --registry'")  # fmt: skip
    return matches[0]
