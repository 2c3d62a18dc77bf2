"""``kubeloop init``: detect the service in a folder and write what it needs to run in
the cluster. Files that exist are left alone (and listed as skipped)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kubeloop import ui
from kubeloop.errors import KubeloopError


@dataclass(frozen=True)
class Detected:
    language: str
    dockerfile: str
    port: int


def _python(folder: Path, port: int) -> Detected | None:
    markers = ("requirements.txt", "pyproject.toml", "setup.py")
    if not any((folder / f).exists() for f in markers) and not list(folder.glob("*.py")):
        return None
    entry = next((f for f in ("main.py", "app.py", "server.py") if (folder / f).exists()), None)
    if entry is None:
        candidates = sorted(p.name for p in folder.glob("*.py"))
        entry = candidates[0] if candidates else "main.py"
    install = (
        "COPY requirements.txt ./\nRUN pip install --no-cache-dir -r requirements.txt\n"
        if (folder / "requirements.txt").exists() else ""
    )  # fmt: skip
    return Detected("python", f"""FROM python:3.11-slim
WORKDIR /app
{install}COPY . .
ENV PORT={port} PYTHONUNBUFFERED=1
EXPOSE {port}
CMD ["python", "{entry}"]
""", port)  # fmt: skip


def _node(folder: Path, port: int) -> Detected | None:
    package = folder / "package.json"
    if not package.exists():
        return None
    try:
        data = json.loads(package.read_text())
    except ValueError as exc:
        raise KubeloopError(f"{package} is not valid JSON: {exc}") from exc
    start = ["npm", "start"] if "start" in (data.get("scripts") or {}) else [
        "node", data.get("main", "index.js")]  # fmt: skip
    deps = "RUN npm install --omit=dev\n" if data.get("dependencies") else ""
    return Detected("node", f"""FROM node:18-slim
WORKDIR /app
COPY package*.json ./
{deps}COPY . .
ENV PORT={port}
EXPOSE {port}
CMD {json.dumps(start)}
""", port)  # fmt: skip


def _go(folder: Path, port: int) -> Detected | None:
    gomod = folder / "go.mod"
    if not gomod.exists():
        return None
    match = re.search(r"^module\s+(\S+)", gomod.read_text(), re.M)
    binary = (match.group(1).rsplit("/", 1)[-1] if match else "app") or "app"
    return Detected("go", f"""FROM golang:1.19 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -o /out/{binary} .

FROM debian:bookworm-slim
COPY --from=build /out/{binary} /usr/local/bin/{binary}
ENV PORT={port}
EXPOSE {port}
CMD ["/usr/local/bin/{binary}"]
""", port)  # fmt: skip


DEFAULT_PORTS = {"python": 8000, "node": 3000, "go": 8080}


def detect(folder: Path, port: int | None = None) -> Detected:
    for language, finder in (("go", _go), ("node", _node), ("python", _python)):
        found = finder(folder, port or DEFAULT_PORTS[language])
        if found:
            return found
    raise KubeloopError(f"no Python, Node or Go service found in {folder}",
                        "run 'kubeloop init' in the service's folder (it looks for "
                        "requirements.txt/pyproject.toml/*.py, package.json or go.mod)")  # fmt: skip


def _manifests(name: str, port: int) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: {name}
          image: {name}
          ports: [{{containerPort: {port}}}]
          readinessProbe:
            tcpSocket: {{port: {port}}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: {port}}}]
"""


def _config(name: str, port: int) -> str:
    return f"""# kubeloop project: 'kubeloop dev' builds, deploys and watches; see 'kubeloop --help'.
apiVersion: kubeloop/v1
name: {name}
artifacts:
  - image: {name}
    context: .
manifests:
  raw: [k8s/*.yaml]
portForward:
  - resource: service/{name}
    port: 80
    localPort: {port}
environments:
  local: {{}}
  staging:
    namespace: {name}-staging
"""


def project_name(folder: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    return (name or "app")[:40]


# Docker's rules: a pattern without '**/' is the context root's only.
DOCKERIGNORE = "kubeloop.yaml\nk8s/\n.git\n.venv\n**/__pycache__\nnode_modules\n"


def init_project(folder: Path, name: str | None = None, port: int | None = None) -> list[Path]:
    if not folder.is_dir():
        raise KubeloopError(f"{folder} is not a folder")
    detected = detect(folder, port)
    name = name or project_name(folder)
    files = {
        folder / "Dockerfile": detected.dockerfile,
        folder / "k8s" / "deployment.yaml": _manifests(name, detected.port),
        folder / "kubeloop.yaml": _config(name, detected.port),
        folder / ".dockerignore": DOCKERIGNORE,
    }
    written = []
    for path, text in files.items():
        if path.exists():
            ui.warn(f"{path} exists; left as it is")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
