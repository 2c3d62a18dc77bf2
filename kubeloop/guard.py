"""The in-cluster guard of a session's changes to workloads (dev mode's supervisor, a
bridge's swap).

Dev mode wraps workloads in kubeloop's supervisor (recorded on each, see sync/devmode.py)
and undoes that when ``dev`` stops. If ``dev`` cannot stop cleanly (SIGKILL, a laptop
that sleeps or loses the network), a small pod in the namespace does it: kubeloop renews
a Lease every few seconds, and when the renewals stop for ``duration`` seconds the guard
(the agent binary, ``kubeloop-agent guard``) puts the project's workloads back, deletes
the lease and ends; the pod is owned by the lease and goes with it. Its rights are a Role
in the namespace: patch the project's workloads, read and delete the lease.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Callable

from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, KubeError

NAME = "kubeloop-guard"
RENEW_EVERY = 3.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rbac(namespace: str) -> list[Obj]:
    meta = {"name": NAME, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubeloop"}}  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [
             {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
              "verbs": ["get", "list", "patch"]},
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "verbs": ["get", "delete"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
    ]  # fmt: skip


def guard_pod(namespace: str, project: str, lease: Obj, image: str, duration: int,
              workload: str | None = None) -> Obj:  # fmt: skip
    # What it puts back: the project's workloads, or one (PLURAL/NAME).
    scope = ["--workload", workload] if workload else ["--project", project]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{NAME}-{project}-{secrets.token_hex(3)}"[:63], "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubeloop", "kubeloop.dev/guard": project},
            "ownerReferences": [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "name": lease["metadata"]["name"],
                                 "uid": lease["metadata"]["uid"]}],
        },
        "spec": {
            "serviceAccountName": NAME,
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "guard", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/kubeloop-agent", "guard",  # in its own namespace
                            "--lease", lease["metadata"]["name"], *scope,
                            "--duration", f"{duration}s"],
                "resources": {"requests": {"cpu": "5m", "memory": "16Mi"},
                              "limits": {"cpu": "100m", "memory": "64Mi"}},
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}},
            }],
        },
    }  # fmt: skip


class Guard:
    """Start with :meth:`start` before changing workloads, keep alive with
    :meth:`keep_alive` while the session runs, and :meth:`end` after undoing the change
    (or when the user keeps it)."""

    def __init__(self, kube: Kube, namespace: str, project: str, image: str,
                 duration: int = 20, on_event: Callable[[str], None] = lambda _: None,
                 workload: str | None = None) -> None:  # fmt: skip
        self.kube = kube
        self.workload = workload  # PLURAL/NAME: guard that one, not the project's
        self.namespace = namespace
        self.project = project
        self.image = image
        self.duration = duration
        self.on_event = on_event
        self.lease_path = (f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/"
                           f"kubeloop-dev-{project}")  # fmt: skip
        self.pod: str | None = None

    async def start(self) -> None:
        for obj in rbac(self.namespace):
            await self.kube.apply(obj)
        # A lease left by an earlier session that died: this session takes over (its
        # guard ends with the old lease; this one's changes are the current ones).
        await self._delete_lease()
        try:
            lease = await self.kube.request(
                "POST", self.lease_path.rsplit("/", 1)[0],
                body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": self.lease_path.rsplit("/", 1)[1],
                                   "labels": {"app.kubernetes.io/managed-by": "kubeloop"}},
                      "spec": {"holderIdentity": "kubeloop dev",
                               "leaseDurationSeconds": self.duration, "renewTime": _now()}},
            )  # fmt: skip
            pod = guard_pod(self.namespace, self.project, lease, self.image, self.duration,
                            self.workload)  # fmt: skip
            await self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/pods", body=pod)
        except KubeError as exc:
            raise KubeloopError(
                f"cannot start the in-cluster guard of dev mode's changes: {exc.message}",
                "dev mode needs to create a ServiceAccount, Role, Lease and Pod in the "
                "namespace; without them a killed 'dev' leaves its change until "
                "'kubeloop reset'",
            ) from exc
        self.pod = pod["metadata"]["name"]

    async def renew(self) -> None:
        await self.kube.request("PATCH", self.lease_path, body={"spec": {"renewTime": _now()}},
                                content_type="application/merge-patch+json")  # fmt: skip

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await self.renew()
            except KubeloopError as exc:
                self.on_event(f"guard: cannot renew the lease ({exc.message}); dev mode's "
                              f"change is undone in the cluster after {self.duration}s")  # fmt: skip

    async def end(self) -> None:
        """The session ended cleanly: the guard goes (with its lease)."""
        await self._delete_lease()
        if self.pod:
            await self.kube.delete({"apiVersion": "v1", "kind": "Pod",
                                    "metadata": {"name": self.pod, "namespace": self.namespace}},
                                   grace_seconds=0)  # fmt: skip

    async def _delete_lease(self) -> None:
        try:
            await self.kube.request("DELETE", self.lease_path)
        except KubeError as exc:
            if exc.status != 404:
                raise
