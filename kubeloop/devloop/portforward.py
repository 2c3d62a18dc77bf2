"""Port-forwards that outlive pods: when the pod behind one goes away (rollout, crash),
the forward is re-established to a new pod."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kubeloop.config import PortForward
from kubeloop.render.render import kubectl_command


class Forwarder:
    """Keeps ``kubectl port-forward`` running for one declared forward.

    kubectl resolves a service or deployment to one ready pod and exits when that pod
    goes; we restart it, with a short back-off, which then picks a current pod.
    """

    def __init__(self, spec: PortForward, namespace: str, kubeconfig: str, context: str,
                 on_event: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
        self.spec = spec
        self.namespace = spec.namespace or namespace
        self.kubeconfig = kubeconfig
        self.context = context
        self.on_event = on_event
        self.local_port = spec.local_port or spec.port
        self.ready = asyncio.Event()
        self.restarts = 0

    def argv(self) -> list[str]:
        return [kubectl_command(), "--kubeconfig", self.kubeconfig, "--context", self.context,
                "port-forward", "-n", self.namespace, "--address", "127.0.0.1",
                self.spec.resource, f"{self.local_port}:{self.spec.port}"]  # fmt: skip

    async def run(self) -> None:
        backoff = 0.2
        while True:
            process = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            try:
                assert process.stdout is not None and process.stderr is not None
                first = await process.stdout.readline()
                if first.startswith(b"Forwarding from"):
                    self.ready.set()
                    self.on_event(f"forwarding 127.0.0.1:{self.local_port} -> "
                                  f"{self.spec.resource}:{self.spec.port}")  # fmt: skip
                    backoff = 0.2
                    # Drain stdout so kubectl never blocks on a full pipe.
                    while await process.stdout.readline():
                        pass
                await process.wait()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            self.ready.clear()
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
