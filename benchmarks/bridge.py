"""``kubeloop bridge`` speed on the native cluster, each figure beside a baseline from the
same run.

Usage: python benchmarks/bridge.py [--requests N] [--size-mb MB] [--outbound N]

- added latency of a small HTTP GET (keep-alive, and a new connection each time) from a
  client pod through the bridge to the local process, against the same GET from a local
  client through ``kubectl port-forward`` to the pod's own server. The baseline is the
  standard way to cross the same API-server stream (kubectl → API server → kubelet → the
  pod), in the opposite direction: the bridge's path adds the pod → agent → ``kubectl
  exec`` hop and the local namespace hop. ``added_latency_p50_ms`` = bridge p50 minus
  port-forward p50 (keep-alive); the new-connection figures are given too, and the plain
  in-cluster GET (client pod → Service → pod, no bridge) for scale;
- personal mode as the rest of the team sees it: the same GETs and download without the
  header, through the pod's router on to the app, against the same with no bridge;
- throughput of one 100 MB download: client pod ← bridge ← local process, against local
  client ← ``kubectl port-forward`` ← pod server;
- outbound: the bridged command itself resolves a ClusterIP Service by name, connects and
  makes a small GET, N times (p50), against the same script run inside a pod;
- time from starting ``kubeloop bridge`` (the CLI, a subprocess) to the first request
  served locally, seen by a client pod polling the Service every 50 ms (warm: the agent
  image is pushed and its ephemeral container exists from the earlier phases);
- time from SIGKILL of the ``kubeloop bridge`` process to the original pods answering
  again, and from SIGSTOP of it (the laptop-sleeps case: only the agent's 10 s
  heartbeat expiry gives the traffic back), then what happens on SIGCONT.

A request that gets no answer within 2 s is counted (``*_failed_requests``), left out of
the percentiles, and the loop goes on. Pods and this machine share one clock (native cluster), so times taken in the client pod
and here are compared directly. All traffic stays on loopback and the cluster's pods.
The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubeloop.bridge import Bridge, BridgeSpec
from kubeloop.cluster import ClusterInfo, get_cluster, seed_base_image
from kubeloop.core import kubectl_command
from kubeloop.kube import Kube

ROOT = Path(__file__).parents[1]
NAMESPACE = "bench-bridge"
KUBELOOP = str(Path(sys.executable).with_name("kubeloop"))
PORT_FORWARD_PORT = 18581

# One server for the pods and the local process: ``python3 -c SERVER PORT BODY``. GET /
# answers BODY, GET /big/N answers N bytes. Each small answer is one write with Nagle
# off, so no 40 ms delayed-ACK stall is charged to either path.
SERVER = r"""
import http.server as h, socketserver, sys
PORT, BODY = int(sys.argv[1]), sys.argv[2].encode()
CHUNK = memoryview(b"x" * (1 << 20))
class H(h.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path.startswith("/big/"):
            left = int(self.path[5:])
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % left)
            while left > 0:
                part = CHUNK[:min(left, len(CHUNK))]
                self.wfile.write(part)
                left -= len(part)
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
socketserver.TCPServer.allow_reuse_address = True
h.ThreadingHTTPServer(("", PORT), H).serve_forever()
"""

# ``CLIENT HOST PORT N SECONDS SIZE``: N small GETs with keep-alive, N with a new
# connection each, then one download of SIZE bytes; JSON of the timings (seconds).
CLIENT = r"""
import http.client, json, sys, time
host, port, count, limit, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
deadline = time.monotonic() + limit
out, errors = {}, []
for mode in ("keepalive", "new"):
    times, bodies, conn = [], set(), None
    for index in range(count + 5):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        try:
            if conn is None or mode == "new":
                conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/")
            bodies.add(conn.getresponse().read().decode())
        except Exception as exc:
            errors.append([mode, index, type(exc).__name__, round(time.perf_counter() - started, 3)])
            conn.close()
            conn = None
            continue
        if mode == "new":
            conn.close()
        if index >= 5:
            times.append(time.perf_counter() - started)
    if conn is not None:
        conn.close()
    out[mode] = times
    out[mode + "_bodies"] = sorted(bodies)
out["errors"] = errors
for attempt in range(3 if size else 0):  # a lost request is recorded, then tried again
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        started = time.perf_counter()
        conn.request("GET", "/big/%d" % size)
        response, got = conn.getresponse(), 0
        while time.monotonic() < deadline + 120:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        out["download_s"], out["download_bytes"] = time.perf_counter() - started, got
        break
    except Exception as exc:
        errors.append(["download", attempt, type(exc).__name__, round(time.perf_counter() - started, 3)])
    finally:
        conn.close()
print(json.dumps(out))
"""

# ``OUTBOUND HOST PORT N SECONDS``: resolve HOST, connect, GET /, N times.
OUTBOUND = r"""
import http.client, json, socket, sys, time
host, port, count, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + limit
dns, total, bodies = [], [], set()
for index in range(count + 3):
    if time.monotonic() > deadline:
        break
    started = time.perf_counter()
    address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    resolved = time.perf_counter()
    conn = http.client.HTTPConnection(address, port, timeout=10)
    conn.request("GET", "/")
    bodies.add(conn.getresponse().read().decode())
    conn.close()
    if index >= 3:
        dns.append(resolved - started)
        total.append(time.perf_counter() - started)
print(json.dumps({"dns": dns, "total": total, "bodies": sorted(bodies), "address": address}))
"""

# ``POLL HOST PORT WANT SECONDS``: a new connection every 50 ms until the answer is WANT;
# prints "polling" at once, then JSON with the wall-clock time of that first answer.
POLL = r"""
import http.client, json, sys, time
host, port, want, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
print("polling", flush=True)
end, first, polls, errors, body = time.time() + limit, None, 0, 0, ""
while time.time() < end:
    started = time.time()
    polls += 1
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        conn.close()
    except Exception as exc:
        body, errors = "error: " + type(exc).__name__, errors + 1
    if body == want:
        first = time.time()
        break
    time.sleep(max(0.0, 0.05 - (time.time() - started)))
print(json.dumps({"first": first, "polls": polls, "errors": errors, "last": body}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def server_pod(name: str, body: str) -> list[dict[str, Any]]:
    labels = {"app": name}
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{
                         "name": name, "image": "python:3.11-slim",
                         "command": ["python3", "-c", SERVER, "8000", body],
                         "ports": [{"containerPort": 8000}],
                         "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                     }]}}},
    }, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]},
    }]  # fmt: skip


async def setup(kube: Kube) -> str:
    """``web`` (the bridged workload, answers "cluster"), ``db`` (the outbound target)
    and an idle ``client`` pod; returns the web pod's name."""
    for _ in range(240):  # a namespace left by an interrupted run must be gone first
        found = await kube.get(f"/api/v1/namespaces/{NAMESPACE}")
        if found is None or not found["metadata"].get("deletionTimestamp"):
            break
        await asyncio.sleep(0.5)
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for obj in [*server_pod("web", "cluster"), *server_pod("db", "db")]:
        await kube.apply(obj)
    await kube.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NAMESPACE},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "c", "image": "python:3.11-slim", "command": ["sleep", "1800"]}]},
    })  # fmt: skip
    for name in ("web", "db"):
        await kube.wait_for(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
                            lambda d: d.get("status", {}).get("readyReplicas") == 1,
                            f"{name} ready", 120)  # fmt: skip
    await kube.wait_for(f"/api/v1/namespaces/{NAMESPACE}/pods/client",
                        lambda p: p.get("status", {}).get("phase") == "Running",
                        "client running", 120)  # fmt: skip
    pods = await kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                              params={"labelSelector": "app=web"})  # fmt: skip
    return str(next(p["metadata"]["name"] for p in pods["items"]
                    if not p["metadata"].get("deletionTimestamp")))  # fmt: skip


class Cluster:
    def __init__(self, info: ClusterInfo) -> None:
        self.kubectl = [kubectl_command(), "--kubeconfig", info.kubeconfig, "-n", NAMESPACE]

    async def in_client(self, code: str, *args: object, timeout: float = 120) -> Any:
        """Run ``python3 -c code args`` in the client pod; its last output line, as JSON."""
        process = await asyncio.create_subprocess_exec(
            *self.kubectl, "exec", "client", "--", "python3", "-c", code, *map(str, args),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"client pod script failed: {err.decode()[-2000:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    async def start_poll(
        self, want: str, limit: float, host: str = "web"
    ) -> asyncio.subprocess.Process:
        """A poller in the client pod, returned once it polls."""
        process = await asyncio.create_subprocess_exec(
            *self.kubectl, "exec", "client", "--", "python3", "-c", POLL, host, "80", want,
            str(limit), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if line.strip() != b"polling":
            raise RuntimeError(f"poller did not start: {line!r}")
        return process


async def poll_result(process: asyncio.subprocess.Process, limit: float) -> dict[str, Any]:
    out, err = await asyncio.wait_for(process.communicate(), limit + 30)
    if process.returncode != 0:
        raise RuntimeError(f"poller failed: {err.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def local_client(port: int, count: int, limit: float, size: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CLIENT, "127.0.0.1", str(port), str(count),
                           str(limit), str(size)], check=True, capture_output=True,
                          timeout=limit + 180)  # fmt: skip
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def wait_port(port: int, limit: float) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def port_forward_baseline(info: ClusterInfo, pod: str, args: argparse.Namespace) -> dict[str, Any]:
    """Local client → kubectl port-forward → the web pod's own server."""
    forward = subprocess.Popen([kubectl_command(), "--kubeconfig", info.kubeconfig, "-n",
                                NAMESPACE, "port-forward", f"pod/{pod}",
                                f"{PORT_FORWARD_PORT}:8000"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_port(PORT_FORWARD_PORT, 30)
        return local_client(PORT_FORWARD_PORT, args.requests, args.seconds, args.size_mb << 20)
    finally:
        forward.terminate()
        forward.wait(10)


def bridge_argv(*command: str) -> list[str]:
    """``kubeloop bridge`` of the web Deployment to ``python -c COMMAND...`` here."""
    return [KUBELOOP, "bridge", "deployment/web", "--port", "8000", "-n", NAMESPACE, "--",
            sys.executable, "-c", *command]  # fmt: skip


def leftovers(token: str) -> list[int]:
    """Processes still holding this run's token on their command line (the local server,
    which must not outlive ``kubeloop bridge``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


async def lifecycle(cluster: Cluster, log: Path, figures: dict[str, Any], freeze: bool) -> None:
    """Start → first request served here; SIGKILL → pods answer again; a second start,
    SIGSTOP → pods answer again (heartbeat expiry); SIGCONT → what then."""
    token = f"local-{os.getpid()}-{int(time.time())}"
    with log.open("ab") as output:
        for run in ("kill", "freeze") if freeze else ("kill",):
            poller = await cluster.start_poll(token, 60)
            started = time.time()
            process = await asyncio.create_subprocess_exec(
                *bridge_argv(SERVER, "8000", token), stdout=output, stderr=output
            )
            try:
                seen = await poll_result(poller, 60)
                if seen["first"] is None:
                    raise RuntimeError(f"bridge never served ({seen}); see {log}")
                key = "first_request_s" if run == "kill" else "first_request_again_s"
                figures[key] = round(seen["first"] - started, 3)
                await asyncio.sleep(1)
                poller = await cluster.start_poll("cluster", 40)
                stopped = time.time()
                os.kill(process.pid, signal.SIGKILL if run == "kill" else signal.SIGSTOP)
                seen = await poll_result(poller, 40)
                figures[f"restore_after_{run}_s"] = (
                    round(seen["first"] - stopped, 3) if seen["first"] else None
                )
                figures[f"restore_after_{run}_failed_polls"] = seen["errors"]
                if run == "kill":
                    await asyncio.wait_for(process.wait(), 10)
                    await asyncio.sleep(0.5)
                    orphans = leftovers(token)
                    figures["orphans_after_kill"] = len(orphans)
                    for pid in orphans:  # started (indirectly) by this run
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                else:
                    # The laptop wakes: does the traffic come back here, and does kubeloop
                    # still stop cleanly?
                    poller = await cluster.start_poll(token, 8)
                    woke = time.time()
                    os.kill(process.pid, signal.SIGCONT)
                    seen = await poll_result(poller, 8)
                    figures["after_cont_served_here_again_s"] = (
                        round(seen["first"] - woke, 3) if seen["first"] else None
                    )
                    process.terminate()
                    try:
                        figures["after_cont_sigterm_exit"] = await asyncio.wait_for(
                            process.wait(), 15
                        )
                    except TimeoutError:
                        figures["after_cont_sigterm_exit"] = "hung"
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGCONT)
                        process.kill()
                    await asyncio.wait_for(process.wait(), 10)
                for pid in leftovers(token):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="small GETs per mode")
    parser.add_argument("--size-mb", type=int, default=100, help="size of the download")
    parser.add_argument("--outbound", type=int, default=100, help="outbound requests")
    parser.add_argument("--seconds", type=float, default=60, help="time limit per loop")
    parser.add_argument("--no-freeze", action="store_true", help="skip the SIGSTOP case")
    args = parser.parse_args()
    began = time.monotonic()
    info = get_cluster("kubeloop")
    kube = await Kube.connect(info.kubeconfig, info.context)
    cluster = Cluster(info)
    figures: dict[str, Any] = {}
    size = args.size_mb << 20
    log = Path(tempfile.gettempdir()) / f"kubeloop-bench-bridge-{os.getpid()}.log"
    try:
        await seed_base_image("python:3.11-slim", "kubeloop", quiet=True)  # cached: < 1 s
        pod = await setup(kube)
        for host, want in (("web", "cluster"), ("db", "db")):  # until kube-proxy routes them
            seen = await poll_result(await cluster.start_poll(want, 60, host), 60)
            if seen["first"] is None:
                raise RuntimeError(f"Service {host} does not answer from the client pod: {seen}")

        # In the cluster, no bridge: client pod → Service → web pod.
        direct = await cluster.in_client(CLIENT, "web", 80, args.requests, args.seconds, size)
        # Baseline: local client → kubectl port-forward → web pod.
        forward = port_forward_baseline(info, pod, args)

        # The bridge, through the library: client pod → web pod → agent → kubectl exec →
        # kubeloop → the local server in its namespaces.
        token = f"local-{os.getpid()}"
        spec = BridgeSpec("deployment/web", 8000, [sys.executable, "-c", SERVER, "8000", token],
                          NAMESPACE)  # fmt: skip
        bridge = asyncio.create_task(Bridge(kube, info, spec).run())
        try:
            poller = await cluster.start_poll(token, 90)
            seen = await poll_result(poller, 90)
            if seen["first"] is None:
                raise RuntimeError(f"the bridge never served: {seen}")
            bridged = await cluster.in_client(CLIENT, "web", 80, args.requests, args.seconds,
                                              size)  # fmt: skip
        finally:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(bridge, 30)
        # Personal mode, as the rest of the team sees it: requests without the header go
        # through the pod's router (a reverse proxy) on to the app.
        personal_spec = BridgeSpec("deployment/web", 8000,
                                   [sys.executable, "-c", SERVER, "8000", token], NAMESPACE,
                                   mode="personal", header=("X-Kubeloop-Session", "bench"))  # fmt: skip
        personal = Bridge(kube, info, personal_spec)
        personal_task = asyncio.create_task(personal.run())
        try:
            deadline = time.monotonic() + 90
            while not (personal.links and personal.local) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if not personal.links:
                raise RuntimeError("the personal bridge never started")
            passthrough = await cluster.in_client(CLIENT, "web", 80, args.requests,
                                                  args.seconds, size)  # fmt: skip
        finally:
            personal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(personal_task, 30)
        for name, result in (("direct", direct), ("port_forward", forward), ("bridge", bridged),
                             ("personal_passthrough", passthrough)):  # fmt: skip
            figures[f"{name}_failed_requests"] = len(result["errors"])
            if result["errors"]:
                print(f"{name}: failed requests [mode, index, error, seconds]: "
                      f"{result['errors'][:20]}", file=sys.stderr)  # fmt: skip
        for name, result, want in (("direct", direct, "cluster"),
                                   ("port_forward", forward, "cluster"),
                                   ("bridge", bridged, token),
                                   ("personal_passthrough", passthrough, "cluster")):  # fmt: skip
            for mode in ("keepalive", "new"):
                if result[f"{mode}_bodies"] != [want]:
                    raise RuntimeError(f"{name}/{mode} got {result[f'{mode}_bodies']}")
            if result.get("download_bytes") != size:
                raise RuntimeError(f"{name} download got {result.get('download_bytes')} bytes")

        figures["bridge_p50_ms"] = ms(percentile(bridged["keepalive"], 50))
        figures["port_forward_p50_ms"] = ms(percentile(forward["keepalive"], 50))
        figures["added_latency_p50_ms"] = round(
            figures["bridge_p50_ms"] - figures["port_forward_p50_ms"], 2
        )
        figures["bridge_p99_ms"] = ms(percentile(bridged["keepalive"], 99))
        figures["port_forward_p99_ms"] = ms(percentile(forward["keepalive"], 99))
        figures["bridge_new_conn_p50_ms"] = ms(percentile(bridged["new"], 50))
        figures["port_forward_new_conn_p50_ms"] = ms(percentile(forward["new"], 50))
        figures["added_latency_new_conn_p50_ms"] = round(
            figures["bridge_new_conn_p50_ms"] - figures["port_forward_new_conn_p50_ms"], 2
        )
        figures["direct_p50_ms"] = ms(percentile(direct["keepalive"], 50))
        figures["direct_new_conn_p50_ms"] = ms(percentile(direct["new"], 50))
        figures["personal_passthrough_p50_ms"] = ms(percentile(passthrough["keepalive"], 50))
        figures["personal_passthrough_added_p50_ms"] = round(
            figures["personal_passthrough_p50_ms"] - figures["direct_p50_ms"], 2
        )
        figures["personal_passthrough_throughput_mb_s"] = round(
            size / (1 << 20) / passthrough["download_s"], 1
        )
        figures["requests_per_mode"] = len(bridged["keepalive"])
        mb = size / (1 << 20)
        figures["transfer_mb"] = args.size_mb
        figures["bridge_throughput_mb_s"] = round(mb / bridged["download_s"], 1)
        figures["port_forward_throughput_mb_s"] = round(mb / forward["download_s"], 1)
        figures["direct_throughput_mb_s"] = round(mb / direct["download_s"], 1)

        # Outbound: the bridged command times its own requests to the db Service.
        done = subprocess.run(
            bridge_argv(OUTBOUND, "db", "80", str(args.outbound), str(args.seconds)),
            capture_output=True, timeout=args.seconds + 120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"outbound bridge failed ({done.returncode}): "
                               f"{done.stderr.decode()[-2000:]}")  # fmt: skip
        out = json.loads(done.stdout.decode().strip().splitlines()[-1])
        pod_out = await cluster.in_client(OUTBOUND, "db", 80, args.outbound, args.seconds)
        for name, result in (("outbound", out), ("in-pod", pod_out)):
            if result["bodies"] != ["db"]:
                raise RuntimeError(f"{name} got {result['bodies']}")
        figures["outbound_p50_ms"] = ms(percentile(out["total"], 50))
        figures["in_pod_p50_ms"] = ms(percentile(pod_out["total"], 50))
        figures["outbound_dns_p50_ms"] = ms(percentile(out["dns"], 50))
        figures["in_pod_dns_p50_ms"] = ms(percentile(pod_out["dns"], 50))
        figures["outbound_requests"] = len(out["total"])

        await lifecycle(cluster, log, figures, not args.no_freeze)
    finally:
        await kube.delete(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        await kube.close()
    figures["benchmark_s"] = round(time.monotonic() - began, 1)

    rows = [
        ("small GET, keep-alive, p50 (ms)", "bridge_p50_ms", "port_forward_p50_ms"),
        ("small GET, keep-alive, p99 (ms)", "bridge_p99_ms", "port_forward_p99_ms"),
        ("small GET, new connection, p50 (ms)", "bridge_new_conn_p50_ms",
         "port_forward_new_conn_p50_ms"),
        (f"{args.size_mb} MB download (MB/s)", "bridge_throughput_mb_s",
         "port_forward_throughput_mb_s"),
        ("outbound: resolve+connect+GET, p50 (ms)", "outbound_p50_ms", "in_pod_p50_ms"),
        ("outbound: DNS lookup, p50 (ms)", "outbound_dns_p50_ms", "in_pod_dns_p50_ms"),
    ]  # fmt: skip
    print(f"{'':42} {'bridge':>10} {'baseline':>10}   baseline is")
    for label, ours, base in rows:
        what = "in a pod" if "in_pod" in base else "kubectl port-forward"
        print(f"{label:42} {figures[ours]:>10} {figures[base]:>10}   {what}")
    print(f"{'in-cluster GET p50 keep-alive / new (ms)':42} "
          f"{figures['direct_p50_ms']:>10} {figures['direct_new_conn_p50_ms']:>10}   "
          f"client pod -> pod, no bridge")  # fmt: skip
    print(f"{'personal mode, without the header: p50 / MB/s':42} "
          f"{figures['personal_passthrough_p50_ms']:>10} "
          f"{figures['personal_passthrough_throughput_mb_s']:>10}   "
          f"client pod -> router -> pod (no header: not bridged)")  # fmt: skip
    for key in ("direct_failed_requests", "port_forward_failed_requests",
                "bridge_failed_requests", "added_latency_p50_ms", "added_latency_new_conn_p50_ms",
                "direct_throughput_mb_s", "first_request_s", "first_request_again_s",
                "restore_after_kill_s", "restore_after_kill_failed_polls", "orphans_after_kill",
                "restore_after_freeze_s", "restore_after_freeze_failed_polls",
                "after_cont_served_here_again_s", "after_cont_sigterm_exit", "benchmark_s"):  # fmt: skip
        if key in figures:
            print(f"{key:>42}: {figures[key]}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
