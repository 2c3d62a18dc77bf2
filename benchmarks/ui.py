"""The dashboard's speed in a real browser (Debian's headless Chromium via Playwright).

Usage: python benchmarks/ui.py [--rounds N] [--events N]

- first paint: a fresh page on a session of 20 workloads (20 artifacts, 40 pods, 20
  port-forwards, 20 sync rules, 2,000 log lines already kept), from navigation start to
  all 20 workload rows on screen (budget 1 s); the browser's first-contentful-paint too;
- event to page: a pod phase change, a build result and a log line, each published to
  the hub as the dev loop does, until the page shows it (a MutationObserver in the page
  stamps the moment; same clock on both sides). Budget p50 200 ms.

The session's state is fed to the hub directly, not from a cluster: what is measured is
the dashboard (hub, server, page), not the cluster's own delays.

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from kubeloop.dashboard import DashboardServer, Hub
from kubeloop.dashboard.browser import headless_chromium

WORKLOADS = 20

SEEN = """(marker) => {
  window.__seen = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      if (document.body.textContent.includes(marker)) {
        observer.disconnect();
        resolve(performance.timeOrigin + performance.now());
      }
    });
    observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  });
}"""

ROWS_SHOWN = """(count) => new Promise((resolve) => {
  const check = () => document.querySelectorAll('[data-row^="workload:"]').length >= count
    ? resolve(performance.now()) : requestAnimationFrame(check);
  check();
})"""


def pod(name: str, phase: str = "Running") -> dict[str, object]:
    return {"name": name, "phase": phase, "ready": 1, "containers": 1, "restarts": 0,
            "waiting": None}  # fmt: skip


def populate(hub: Hub) -> None:
    hub.update("session", "info", {"project": "bench", "namespace": "bench", "cluster": "kubeloop"})
    for n in range(WORKLOADS):
        name = f"service-{n:02d}"
        hub.update("artifacts", name, {"status": "built", "seconds": 2.5, "cached": False,
                                       "builds": 1, "image": f"localhost:5000/bench/{name}:abc"})  # fmt: skip
        pods = [pod(f"{name}-5d8f6c7b9-{i}x2kq") for i in range(2)]
        hub.update("workloads", f"deployment/{name}", {
            "kind": "Deployment", "name": name, "wanted": 2, "ready": 2, "rollout": "rolled out",
            "pods": pods, "pods_by_name": [p["name"] for p in pods]})  # fmt: skip
        hub.update("forwards", f"service/{name}:80", {
            "resource": f"service/{name}", "port": 80, "url": f"http://127.0.0.1:{18000 + n}/",
            "ready": True, "pod": pods[0]["name"], "moves": 0})  # fmt: skip
        hub.update("sync", f"app={name}", {
            "selector": f"app={name}", "files": 0, "batches": 0, "src": f"/src/{name}",
            "dest": "/app", "last_change": None, "lag_ms": None, "pods": [pods[0]["name"]],
            "initial_files": 12})  # fmt: skip
    for n in range(2000):
        hub.log(f"service-{n % WORKLOADS:02d}-5d8f6c7b9-0x2kq", f"GET /items/{n} 200 1.2ms")


async def main(rounds: int, count: int) -> dict[str, object]:
    hub = Hub()
    populate(hub)
    server = DashboardServer(hub)
    url = await server.start()
    paints: list[float] = []
    contentful: list[float] = []
    delays: dict[str, list[float]] = {"pod": [], "build": [], "log": []}
    try:
        async with headless_chromium() as browser:
            await (await browser.new_page()).goto(url)  # the browser's own start-up, once
            for _ in range(rounds):
                page = await browser.new_page()
                await page.goto(url, wait_until="commit")
                paints.append(float(await page.evaluate(ROWS_SHOWN, WORKLOADS)))
                fcp = await page.evaluate(
                    "() => new Promise(r => { const f = () => { const e = performance"
                    ".getEntriesByName('first-contentful-paint')[0]; e ? r(e.startTime) : "
                    "setTimeout(f, 20); }; f(); })"
                )  # fmt: skip
                contentful.append(float(fcp))
                await page.close()

            page = await browser.new_page()
            await page.goto(url)
            await page.evaluate(ROWS_SHOWN, WORKLOADS)
            for n in range(count):
                kind = ("pod", "build", "log")[n % 3]
                name = f"service-{n % WORKLOADS:02d}"
                marker = f"bench{n:05d}mark"
                # The page shows a build's duration: a unique one is the build's marker.
                await page.evaluate(SEEN, f"{1000 + n} s" if kind == "build" else marker)
                sent = time.time() * 1000
                if kind == "pod":
                    row = dict(hub.rows["workloads"][f"deployment/{name}"])
                    row["pods"] = [{**row["pods"][0], "phase": "Pending", "waiting": marker},
                                   *row["pods"][1:]]  # fmt: skip
                    hub.update("workloads", f"deployment/{name}", row)
                elif kind == "build":
                    hub.patch("artifacts", name, status="built", seconds=1000 + n, cached=False,
                              builds=n)  # fmt: skip
                else:
                    hub.log(f"{name}-5d8f6c7b9-0x2kq", f"request {marker}")
                seen = float(await page.evaluate("() => window.__seen"))
                delays[kind].append(seen - sent)
                await asyncio.sleep(0.05)
    finally:
        await server.close()
    every = sorted(d for values in delays.values() for d in values)
    return {
        "workloads": WORKLOADS,
        "first_paint_ms": round(statistics.median(paints), 1),
        "first_paint_max_ms": round(max(paints), 1),
        "first_contentful_paint_ms": round(statistics.median(contentful), 1),
        "event_to_page_p50_ms": round(statistics.median(every), 1),
        "event_to_page_p95_ms": round(every[int(len(every) * 0.95) - 1], 1),
        **{f"{kind}_to_page_p50_ms": round(statistics.median(v), 1) for kind, v in delays.items()},
        "events": len(every),
        "rounds": rounds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="fresh page loads (median)")
    parser.add_argument("--events", type=int, default=90, help="events published, one at a time")
    args = parser.parse_args()
    figures = asyncio.run(main(args.rounds, args.events))
    print(f"first paint (20 workloads): {figures['first_paint_ms']} ms median, budget 1000")
    print(f"event to page: p50 {figures['event_to_page_p50_ms']} ms, "
          f"p95 {figures['event_to_page_p95_ms']} ms, budget p50 200")  # fmt: skip
    print(json.dumps(figures))
