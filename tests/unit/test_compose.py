"""`kubeloop init --compose`: each translation rule, the cases reported rather than
translated, and the Compose specification's own examples (compose-spec/compose-spec)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubeloop.cli import main
from kubeloop.compose import init_from_compose, load_compose, project_files, translate
from kubeloop.compose._load import interpolate, read_dotenv
from kubeloop.compose._translate import (
    WAIT_IMAGE,
    Translation,
    memory_quantity,
    parse_duration,
    parse_ports,
)
from kubeloop.config.loader import parse as parse_config
from kubeloop.errors import KubeloopError


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


def run(folder: Path, compose: str, **extra: str) -> Translation:
    write(folder, {"compose.yaml": compose, **extra})
    data, files = load_compose(folder)
    return translate(data, folder, "proj", files[0].name)


def service(t: Translation, name: str) -> Any:
    return next(s for s in t.services if s.compose_name == name)


def kind(t: Translation, name: str, k: str) -> dict[str, Any]:
    return next(o for o in service(t, name).objects if o["kind"] == k)


def container(t: Translation, name: str) -> dict[str, Any]:
    return dict(kind(t, name, "Deployment")["spec"]["template"]["spec"]["containers"][0])


def skipped(t: Translation) -> dict[str, str]:
    return {f"{n.service}.{n.key}".lstrip("."): n.message for n in t.notes if not n.translated}


# --- the Compose specification's examples -------------------------------------------------

SPEC_INTRO = """
services:
  frontend:
    image: example/webapp
    ports:
      - "443:8043"
    networks:
      - front-tier
      - back-tier
    configs:
      - httpd-config
    secrets:
      - server-certificate

  backend:
    image: example/database
    volumes:
      - db-data:/etc/data
    networks:
      - back-tier

volumes:
  db-data:
    driver: flocker
    driver_opts:
      size: "10GiB"

configs:
  httpd-config:
    external: true

secrets:
  server-certificate:
    external: true

networks:
  # The presence of these objects is sufficient to define them
  front-tier: {}
  back-tier: {}
"""


def test_the_specification_introduction_example(tmp_path: Path) -> None:
    t = run(tmp_path, SPEC_INTRO)
    assert container(t, "frontend")["image"] == "example/webapp"
    assert kind(t, "frontend", "Service")["spec"]["ports"][0]["port"] == 8043
    assert service(t, "frontend").port_forwards == [
        {"resource": "service/frontend", "port": 8043, "localPort": 443}]  # fmt: skip
    claim = kind(t, "backend", "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert claim["persistentVolumeClaim"]["claimName"] == "db-data"
    assert [o["kind"] for o in t.volumes] == ["StorageClass", "PersistentVolume",
                                              "PersistentVolumeClaim"]  # fmt: skip
    notes = skipped(t)
    assert "configs.httpd-config" in notes and "secrets.server-certificate" in notes
    assert "external" in notes["configs.httpd-config"]
    assert (
        "frontend.configs.httpd-config" in notes and "frontend.secrets.server-certificate" in notes
    )
    assert "driver" in notes["backend.volumes"]
    flattened = [n for n in t.notes if n.key == "networks" and n.translated]
    assert flattened and "front-tier" in flattened[0].message
    # backend has no port: reported, and nothing invented.
    assert not any(o["kind"] == "Service" for o in service(t, "backend").objects)


def test_the_getting_started_example_with_a_source_bind_mount(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    t = run(tmp_path, """
        services:
          web:
            build: .
            ports:
              - "8000:5000"
            volumes:
              - .:/code
              - logvolume01:/var/log
            depends_on:
              - redis
          redis:
            image: redis
        volumes:
          logvolume01: {}
        """, Dockerfile="FROM python:3.11-slim\n")  # fmt: skip
    web = service(t, "web")
    assert web.artifact == {"image": "web", "context": "."}
    assert web.syncs == [{"selector": {"app": "web"}, "src": ".", "dest": "/code",
                          "restart": "process"}]  # fmt: skip
    mounts = container(t, "web")["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [
        "/var/log"
    ]  # the bind mount is a sync, not hostPath
    assert "hostPath" not in yaml.safe_dump(web.objects)
    (wait,) = kind(t, "web", "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert wait["image"] == WAIT_IMAGE and "/dev/tcp/redis/6379" in wait["command"][-1]
    assert kind(t, "redis", "Service")["spec"]["ports"][0]["port"] == 6379  # the image's port


def test_the_specification_ports_examples() -> None:
    ports = parse_ports(["3000", "3000-3005", "8000:8000", "9090-9091:8080-8081", "49100:22",
                         "8000-9000:80", "127.0.0.1:8001:8001",
                         "127.0.0.1:5000-5010:5000-5010", "6060:6060/udp", "::1:6000:6000",
                         "[::1]:6001:6001"], "ports")  # fmt: skip
    pairs = [(p.target, p.published, p.protocol) for p in ports]
    assert pairs[0] == (3000, None, "TCP") and len([p for p in pairs if 3000 <= p[0] <= 3005]) == 7
    assert (8080, 9090, "TCP") in pairs and (8081, 9091, "TCP") in pairs
    assert (22, 49100, "TCP") in pairs and (80, None, "TCP") in pairs
    assert (5010, 5010, "TCP") in pairs and (6060, 6060, "UDP") in pairs
    assert (6000, 6000, "TCP") in pairs and (6001, 6001, "TCP") in pairs
    long = parse_ports([{"name": "web", "target": 80, "host_ip": "127.0.0.1",
                         "published": "8080", "protocol": "tcp", "app_protocol": "http",
                         "mode": "host"}], "ports")  # fmt: skip
    assert [(p.target, p.published) for p in long] == [(80, 8080)]
    for bad in (["http"], ["70000"], ["x:80"], ["1-3:80-81"], [{"published": 80}], ["80/icmp"]):
        with pytest.raises(KubeloopError):
            parse_ports(bad, "ports")


def test_the_specification_profiles_example_becomes_environments(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          frontend:
            image: frontend
            profiles: ["frontend"]
            ports: ["3000:3000"]
          phpmyadmin:
            image: phpmyadmin
            depends_on:
              - db
            profiles:
              - debug
          backend:
            image: backend
          db:
            image: mysql
        """)  # fmt: skip
    config = yaml.safe_load(project_files(t, "compose.yaml")["kubeloop.yaml"])
    assert config["manifests"]["raw"] == ["k8s/backend.yaml", "k8s/db.yaml"]
    assert config["environments"]["debug"]["manifests"]["raw"] == [
        "k8s/backend.yaml", "k8s/db.yaml", "k8s/phpmyadmin.yaml"]  # fmt: skip
    assert config["environments"]["frontend"]["portForward"] == [
        {"resource": "service/frontend", "port": 3000, "localPort": 3000}]  # fmt: skip
    assert "portForward" not in config  # the profile's forward only in its environment


def test_the_specification_healthcheck_example() -> None:
    t_probe = translate({"services": {"app": {"image": "app", "healthcheck": {
        "test": ["CMD", "curl", "-f", "http://localhost"], "interval": "1m30s",
        "timeout": "10s", "retries": 3, "start_period": "40s"}}}}, Path("."), "p", "c")  # fmt: skip
    probe = container(t_probe, "app")["readinessProbe"]
    assert probe == {"exec": {"command": ["curl", "-f", "http://localhost"]},
                     "periodSeconds": 90, "timeoutSeconds": 10, "failureThreshold": 3}  # fmt: skip
    assert "app.healthcheck.start_period" in skipped(t_probe)
    for test, argv in ((["CMD-SHELL", "curl -f http://localhost || exit 1"],
                        ["sh", "-c", "curl -f http://localhost || exit 1"]),
                       ("curl -f http://localhost", ["sh", "-c", "curl -f http://localhost"])):  # fmt: skip
        t = translate({"services": {"a": {"image": "a", "healthcheck": {"test": test}}}},
                      Path("."), "p", "c")  # fmt: skip
        assert container(t, "a")["readinessProbe"]["exec"]["command"] == argv
    for off in ({"test": ["NONE"]}, {"disable": True, "test": "x"}):
        t = translate({"services": {"a": {"image": "a", "expose": ["80"], "healthcheck": off}}},
                      Path("."), "p", "c")  # fmt: skip
        assert "readinessProbe" not in container(t, "a")


def test_the_specification_volumes_example(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          backend:
            image: example/backend
            volumes:
              - type: volume
                source: db-data
                target: /data
                volume:
                  nocopy: true
              - type: bind
                source: /var/run/postgres/postgres.sock
                target: /var/run/postgres/postgres.sock
        volumes:
          db-data:
        """)  # fmt: skip
    mounts = container(t, "backend")["volumeMounts"]
    assert mounts == [{"name": "v0", "mountPath": "/data"}]
    assert "outside the project" in skipped(t)["backend.volumes"]


def test_the_specification_configs_and_secrets_examples(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          redis:
            image: redis:latest
            configs:
              - my_config
              - source: my_other_config
                target: /redis_config
            secrets:
              - server-certificate
              - source: env_secret
        configs:
          my_config:
            file: ./my_config.txt
          my_other_config:
            content: |
              debug=1
        secrets:
          server-certificate:
            file: ./server.cert
          env_secret:
            environment: OAUTH_TOKEN
        """, **{"my_config.txt": "a=1\n", "server.cert": "CERT\n"})  # fmt: skip
    assert kind(t, "redis", "ConfigMap")["data"] == {"my_config": "a=1\n",
                                                     "my_other_config": "debug=1\n"}  # fmt: skip
    assert kind(t, "redis", "Secret")["stringData"] == {"server-certificate": "CERT\n"}
    mounts = {m["mountPath"]: m["subPath"] for m in container(t, "redis")["volumeMounts"]}
    assert mounts == {"/my_config": "my_config", "/redis_config": "my_other_config",
                      "/run/secrets/server-certificate": "server-certificate"}  # fmt: skip
    notes = skipped(t)
    assert "secrets.env_secret" in notes and "redis.secrets.env_secret" in notes
    with pytest.raises(KubeloopError, match="not defined under top-level 'configs:'"):
        run(tmp_path, "services:\n  a: {image: a, configs: [nope]}\n")


def test_the_specification_environment_examples(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          web:
            image: web
            env_file: ./a.env
            environment:
              - RACK_ENV=development
              - SHOW=true
              - USER_INPUT
        """, **{"a.env": "# comment\nRACK_ENV=production\nVAR='quoted value'\n"})  # fmt: skip
    env = {e["name"]: e["value"] for e in container(t, "web")["env"]}
    assert env == {"RACK_ENV": "development", "VAR": "quoted value", "SHOW": "true"}
    assert "USER_INPUT" in next(k for k in skipped(t) if k.startswith("web.environment"))


# --- one rule at a time -------------------------------------------------------------------


def test_build_becomes_an_artifact_and_unsupported_build_keys_are_reported(tmp_path: Path) -> None:
    write(tmp_path, {"api/build/Dockerfile.dev": "FROM python:3.11-slim\n"})
    t = run(tmp_path, """
        services:
          api:
            build:
              context: ./api
              dockerfile: build/Dockerfile.dev
              args:
                VERSION: "1.2"
                FROM_SHELL:
              target: dev
            image: me/api:dev
        """)  # fmt: skip
    assert service(t, "api").artifact == {"image": "api", "context": "api",
                                          "dockerfile": "build/Dockerfile.dev",
                                          "buildArgs": {"VERSION": "1.2"}, "target": "dev"}  # fmt: skip
    assert container(t, "api")["image"] == "api"
    notes = skipped(t)
    assert "api.build.target" not in notes and "api.build.args.FROM_SHELL" in notes
    with pytest.raises(KubeloopError, match="outside"):
        run(tmp_path, "services:\n  a:\n    build: ../elsewhere\n")


def test_ports_make_a_service_and_a_forward_expose_only_a_service(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          web:
            image: nginx
            ports: ["8080:80", "9000", "5353:53/udp"]
            expose: ["81"]
        """)  # fmt: skip
    ports = {
        (p["port"], p.get("protocol", "TCP")) for p in kind(t, "web", "Service")["spec"]["ports"]
    }
    assert ports == {(80, "TCP"), (9000, "TCP"), (53, "UDP"), (81, "TCP")}
    assert service(t, "web").port_forwards == [
        {"resource": "service/web", "port": 80, "localPort": 8080}]  # fmt: skip
    notes = [n.message for n in t.notes if n.key == "ports" and not n.translated]
    assert any("random host port" in m for m in notes) and any("TCP only" in m for m in notes)
    assert container(t, "web")["readinessProbe"] == {"tcpSocket": {"port": 80}, "periodSeconds": 1}


def test_secret_looking_values_go_to_a_secret(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          db:
            image: postgres:15
            environment:
              POSTGRES_PASSWORD: hunter2
              API_KEY: k
              POSTGRES_DB: app
        """)  # fmt: skip
    assert kind(t, "db", "Secret")["stringData"] == {"POSTGRES_PASSWORD": "hunter2", "API_KEY": "k"}
    assert container(t, "db")["env"] == [{"name": "POSTGRES_DB", "value": "app"}]
    assert container(t, "db")["envFrom"] == [{"secretRef": {"name": "db-env"}}]
    assert "hunter2" not in yaml.safe_dump(kind(t, "db", "Deployment"))


def test_command_and_entrypoint(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          a:
            image: a
            entrypoint: /bin/tini --
            command: ["python", "-m", "app", "--name", "it's"]
          b:
            image: b
            command: bundle exec thin -p 3000 'a b'
        """)  # fmt: skip
    assert container(t, "a")["command"] == ["/bin/tini", "--"]
    assert container(t, "a")["args"] == ["python", "-m", "app", "--name", "it's"]
    assert container(t, "b")["args"] == ["bundle", "exec", "thin", "-p", "3000", "a b"]
    assert "command" not in container(t, "b")


def test_restart_policies(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          a: {image: a, restart: always}
          b: {image: b, restart: unless-stopped}
          c: {image: c, restart: "no"}
          d: {image: d, restart: on-failure:3}
        """)  # fmt: skip
    notes = skipped(t)
    assert "a.restart" not in notes and "b.restart" not in notes
    assert "always restarts" in notes["c.restart"] and "on-failure:3" in notes["d.restart"]


def test_bind_mounts_sync_folders_configmap_files_and_report_the_rest(tmp_path: Path) -> None:
    write(tmp_path, {"src/main.py": "x = 1\n", "nginx.conf": "events {}\n",
                     "big.bin": "\0" * 10, "Dockerfile": "FROM python:3.11-slim\n"})  # fmt: skip
    t = run(tmp_path, """
        services:
          app:
            build: .
            volumes:
              - ./src:/app
              - /app/node_modules
              - ./nginx.conf:/etc/nginx/nginx.conf:ro
              - ./big.bin:/data/big.bin
              - ./missing:/missing
              - /etc/hosts:/etc/hosts2
              - type: tmpfs
                target: /scratch
          proxy:
            image: nginx
            volumes: ["./src:/usr/share/nginx/html:ro"]
        """)  # fmt: skip
    app = service(t, "app")
    assert app.syncs == [{"selector": {"app": "app"}, "src": "src", "dest": "/app",
                          "restart": "process", "exclude": ["/node_modules"]}]  # fmt: skip
    assert service(t, "proxy").syncs[0]["restart"] == "none"  # not built: nothing to restart
    config = kind(t, "app", "ConfigMap")
    assert config["data"] == {"nginx.conf": "events {}\n"}
    mounts = {m["mountPath"]: m for m in container(t, "app")["volumeMounts"]}
    assert mounts["/etc/nginx/nginx.conf"]["subPath"] == "nginx.conf"
    assert set(mounts) == {"/etc/nginx/nginx.conf", "/scratch"}
    volumes = kind(t, "app", "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "v6", "emptyDir": {"medium": "Memory"}} in volumes
    messages = [n.message for n in t.notes if n.service == "app" and not n.translated]
    assert any("big.bin" in m for m in messages)
    assert any("does not exist" in m for m in messages)
    assert any("outside the project" in m for m in messages)


def test_named_volumes_are_claims_shared_between_services(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          a: {image: a, volumes: ["shared:/a"]}
          b: {image: b, volumes: ["shared:/b", "ext:/e"]}
        volumes:
          shared: {}
          ext: {external: true}
        """)  # fmt: skip
    claims = [o for o in t.volumes if o["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == ["shared"]  # external: not created
    assert kind(t, "a", "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    pv = next(o for o in t.volumes if o["kind"] == "PersistentVolume")
    assert claims[0]["spec"]["selector"]["matchLabels"] == pv["metadata"]["labels"]
    sc = next(o for o in t.volumes if o["kind"] == "StorageClass")
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert pv["spec"]["storageClassName"] == claims[0]["spec"]["storageClassName"] == "proj-local"


def test_depends_on_conditions(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          db:
            image: postgres:15
            healthcheck: {test: ["CMD", "pg_isready"], interval: 2s}
          migrate:
            image: app
          worker:
            image: app
          app:
            image: app
            depends_on:
              db: {condition: service_healthy}
              migrate: {condition: service_completed_successfully}
              worker: {condition: service_started}
        """)  # fmt: skip
    (wait,) = kind(t, "app", "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert wait["name"] == "wait-for-db" and "/dev/tcp/db/5432" in wait["command"][-1]
    notes = skipped(t)
    assert "exit" in notes["app.depends_on.migrate"]
    assert "no port" in notes["app.depends_on.worker"]
    with pytest.raises(KubeloopError, match="no service 'nope'"):
        run(tmp_path, "services:\n  a: {image: a, depends_on: [nope]}\n")


def test_service_names_deploy_settings_and_leftovers(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          redis_master:
            image: redis:7
            container_name: my-redis
            user: "999:999"
            cap_add: [NET_ADMIN]
            stop_grace_period: 1m
            deploy:
              replicas: 3
              resources:
                limits: {cpus: "0.5", memory: 512m}
                reservations: {memory: 1gb}
              placement: {constraints: ["node.role == manager"]}
            logging: {driver: syslog}
            networks:
              back:
                aliases: [cache]
            x-custom: 1
        networks:
          back: {}
        x-anchors: {}
        """)  # fmt: skip
    deployment = kind(t, "redis_master", "Deployment")
    assert deployment["metadata"]["name"] == "redis-master"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    c = container(t, "redis_master")
    assert c["resources"] == {"limits": {"cpu": "0.5", "memory": "512Mi"},
                              "requests": {"memory": "1Gi"}}  # fmt: skip
    assert c["securityContext"] == {"runAsUser": 999, "runAsGroup": 999,
                                    "capabilities": {"add": ["NET_ADMIN"]}}  # fmt: skip
    notes = skipped(t)
    assert "redis_master.deploy.placement" in notes and "redis_master.logging" in notes
    assert "redis_master.container_name" in notes
    assert "redis_master.networks.back.aliases" in notes
    assert not any("x-" in key for key in notes)
    renamed = [n for n in t.notes if n.key == "name"]
    assert renamed and "redis-master" in renamed[0].message


def test_durations_and_sizes() -> None:
    assert parse_duration("1m30s", "x") == 90 and parse_duration("500ms", "x") == 0.5
    assert parse_duration(5, "x") == 5
    assert memory_quantity("1024k", "x") == "1024Ki" and memory_quantity(2048, "x") == "2048"
    for bad in ("soon", "1x", ""):
        with pytest.raises(KubeloopError):
            parse_duration(bad, "x")
    with pytest.raises(KubeloopError):
        memory_quantity("lots", "x")


# --- reading compose files ----------------------------------------------------------------


def test_override_file_merges_as_compose_does(tmp_path: Path) -> None:
    write(tmp_path, {
        "docker-compose.yml": """
            services:
              web:
                image: web
                command: serve
                ports: ["8000:8000"]
                environment: [A=1, B=2]
                volumes: ["data:/data", "logs:/logs"]
            """,
        "docker-compose.override.yml": """
            services:
              web:
                command: serve --debug
                ports: ["5678:5678"]
                environment: {B: "3", C: "4"}
                volumes: ["other:/data"]
              extra:
                image: extra
            """,
    })  # fmt: skip
    data, files = load_compose(tmp_path)
    assert [f.name for f in files] == ["docker-compose.yml", "docker-compose.override.yml"]
    web = data["services"]["web"]
    assert web["command"] == "serve --debug"
    assert web["ports"] == ["8000:8000", "5678:5678"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["volumes"] == ["other:/data", "logs:/logs"]
    assert "extra" in data["services"]
    # An explicitly named file gets no override, as with `docker compose -f`.
    _, named = load_compose(tmp_path, "docker-compose.yml")
    assert named == [tmp_path / "docker-compose.yml"]


def test_extends_in_the_same_file_and_from_another(tmp_path: Path) -> None:
    write(tmp_path, {
        "common.yml": """
            services:
              base:
                image: app
                environment: {LEVEL: info, REGION: eu}
                ports: ["8000"]
            """,
        "compose.yaml": """
            services:
              web:
                extends: {file: common.yml, service: base}
                environment: {LEVEL: debug}
              worker:
                extends: web
                command: work
              loop_a: {image: x, extends: loop_b}
              loop_b: {image: x, extends: loop_a}
            """,
    })  # fmt: skip
    with pytest.raises(KubeloopError, match="loops back"):
        load_compose(tmp_path)
    text = (tmp_path / "compose.yaml").read_text()
    (tmp_path / "compose.yaml").write_text(text.split("  loop_a")[0])
    data, _ = load_compose(tmp_path)
    web, worker = data["services"]["web"], data["services"]["worker"]
    assert web["environment"] == {"LEVEL": "debug", "REGION": "eu"} and web["ports"] == ["8000"]
    assert worker["environment"] == web["environment"] and worker["command"] == "work"
    assert "extends" not in worker
    (tmp_path / "compose.yaml").write_text("services:\n  a: {extends: nothing}\n")
    with pytest.raises(KubeloopError, match="no service 'nothing'"):
        load_compose(tmp_path)


def test_services_with_the_same_build_share_one_image(tmp_path: Path) -> None:
    t = run(tmp_path, """
        services:
          web:
            build: .
            image: myapp
            volumes: ["./src:/src"]
          worker:
            build: .
            command: work
            volumes: ["./src:/src"]
          cron:
            image: myapp
            command: tick
        """, Dockerfile="FROM python:3.11-slim\n", **{"src/a.py": ""})  # fmt: skip
    assert service(t, "web").artifact == {"image": "web", "context": "."}
    assert service(t, "worker").artifact is None and service(t, "cron").artifact is None
    assert container(t, "worker")["image"] == container(t, "cron")["image"] == "web"
    assert service(t, "worker").syncs[0]["restart"] == "process"  # it runs a built image
    assert "myapp" not in t.images


def test_variables_from_dotenv_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_SHELL", "shell")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    write(tmp_path, {".env": "TAG=7\nexport PORT=6380 # comment\n",
                     "compose.yaml": """
                         services:
                           r:
                             image: "redis:${TAG}"
                             ports: ["${PORT}:6379"]
                             environment:
                               A: ${UNSET_ONE:-fallback}
                               B: $FROM_SHELL
                               C: "$$HOME"
                               D: ${UNSET_ONE+set}
                         """})  # fmt: skip
    data, _ = load_compose(tmp_path)
    r = data["services"]["r"]
    assert r["image"] == "redis:7" and r["ports"] == ["6380:6379"]
    assert r["environment"] == {"A": "fallback", "B": "shell", "C": "$HOME", "D": ""}
    with pytest.raises(KubeloopError, match="REQUIRED is required: give it"):
        interpolate("${REQUIRED:?give it}", {}, "x")
    with pytest.raises(KubeloopError, match="invalid variable"):
        interpolate("${1BAD}", {}, "x")


@pytest.mark.parametrize(("text", "message"), [
    ("services: [a]", "no services"),
    ("- a", "top level must be a mapping"),
    ("services:\n  web: {ports: '80:80', image: x}", "ports must be a list"),
    ("services:\n  web: {command: 3, image: x}", "command must be a str or list"),
    ("services:\n  web: {}", "neither 'image' nor 'build'"),
    ("services:\n  'bad name': {image: x}", "not a valid service name"),
    ("services:\n  web: {image: x\n", "not valid YAML"),
    ("services:\n  web: {image: x, volumes: [relative/path]}", "absolute path"),
    ("services:\n  web: {image: x, deploy: {replicas: many}}", "whole number"),
    ("services:\n  web: {image: x, healthcheck: {test: [WHAT, x]}}", "CMD"),
    ("services:\n  web: {image: x, env_file: missing.env}", "does not exist"),
    ("volumes: []\nservices:\n  web: {image: x}", "'volumes' must be a mapping"),
    ("services:\n  web_1: {image: x}\n  web-1: {image: y}", "would both be called 'web-1'"),
])  # fmt: skip
def test_bad_compose_files_are_explained(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    with pytest.raises(KubeloopError, match=message):
        data, files = load_compose(tmp_path)
        translate(data, tmp_path, "p", files[0].name)


def test_nested_yaml_aliases_and_anchors(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))  # fmt: skip
    (tmp_path / "compose.yaml").write_text(bomb + "services:\n  a: {image: x}\n")
    with pytest.raises(KubeloopError, match="more than"):
        load_compose(tmp_path)
    # The ordinary use of anchors: shared settings merged into services.
    write(tmp_path, {"compose.yaml": """
        x-common: &common
          environment: {LEVEL: info}
          restart: always
        services:
          a:
            <<: *common
            image: a
        """})  # fmt: skip
    data, _ = load_compose(tmp_path)
    assert data["services"]["a"] == {"environment": {"LEVEL": "info"}, "restart": "always",
                                     "image": "a"}  # fmt: skip


def test_no_compose_file_names_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(KubeloopError, match=r"docker-compose\.yml") as raised:
        load_compose(tmp_path)
    assert raised.value.hint and "--compose FILE" in raised.value.hint
    with pytest.raises(KubeloopError, match="no compose file"):
        load_compose(tmp_path, "other.yml")


def test_dotenv_lines_that_are_not_variables() -> None:
    path = Path(__file__)  # Python source is not KEY=VALUE
    with pytest.raises(KubeloopError, match="is not KEY=VALUE"):
        read_dotenv(path)


# --- the written project ------------------------------------------------------------------

TODO = """
services:
  redis-master:
    image: redis:7
  redis-replica:
    image: redis:7
    command: redis-server --replicaof redis-master 6379
    depends_on: [redis-master]
  frontend:
    build: .
    ports: ["8080:8080"]
    environment:
      REDIS_PRIMARY: redis-master:6379
    volumes: ["./app:/app"]
    depends_on: [redis-master, redis-replica]
"""


@pytest.mark.parametrize("helm", [False, True])
def test_the_written_project_is_a_valid_kubeloop_project(tmp_path: Path, helm: bool) -> None:
    write(tmp_path, {"compose.yaml": TODO, "Dockerfile": "FROM python:3.11-slim\n",
                     "app/server.py": "print()\n"})  # fmt: skip
    result = init_from_compose(tmp_path, helm=helm)
    names = {p.relative_to(tmp_path).as_posix() for p in result.written}
    manifests = "chart/templates" if helm else "k8s"
    assert {
        f"{manifests}/frontend.yaml",
        f"{manifests}/redis-master.yaml",
        "kubeloop.yaml",
    } <= names
    config = parse_config((tmp_path / "kubeloop.yaml").read_text(), tmp_path / "kubeloop.yaml")
    project = config.project
    assert project.name == project.namespace == tmp_path.name.lower().replace("_", "-")[:40]
    assert [a.image for a in project.artifacts] == ["frontend"]
    assert [(f.resource, f.local_port) for f in project.port_forward] == [
        ("service/frontend", 8080)
    ]
    assert [(s.src, s.dest, s.restart) for s in project.sync] == [("app", "/app", "process")]
    if helm:
        assert project.manifests.helm[0].chart == "chart"
        template = (tmp_path / "chart/templates/frontend.yaml").read_text()
        assert 'replicas: {{ index .Values.replicas "frontend" }}' in template
        values = yaml.safe_load((tmp_path / "chart/values.yaml").read_text())
        assert values["replicas"]["frontend"] == 1
    else:
        text = (tmp_path / "k8s/frontend.yaml").read_text()
        assert "&id" not in text and "*id" not in text  # plain YAML, no anchors
        assert text.startswith("# from the 'frontend' service of compose.yaml")
    # Run again: nothing is overwritten.
    (tmp_path / "kubeloop.yaml").write_text("# mine\n")
    again = init_from_compose(tmp_path, helm=helm)
    assert again.written == [] and tmp_path / "kubeloop.yaml" in again.skipped
    assert (tmp_path / "kubeloop.yaml").read_text() == "# mine\n"


def test_the_cli_says_what_it_wrote_what_it_left_out_and_what_to_run(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": TODO + "    logging: {driver: syslog}\n",
                     "Dockerfile": "FROM python:3.11-slim\n", "app/server.py": "print()\n"})  # fmt: skip
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--compose", "--name", "todo"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "kubeloop.yaml" in result.output
    assert "not translated: frontend.logging" in result.output
    assert "seed-image debian:bookworm-slim redis:7" in result.output
    assert "next: kubeloop dev  (then localhost:8080)" in result.output
    assert "frontend.logging: not translated" in (tmp_path / "kubeloop.yaml").read_text()
    (tmp_path / "kubeloop.yaml").unlink()
    as_file = CliRunner().invoke(main, ["init", "--compose", str(tmp_path), "--name", "todo"])
    assert as_file.exit_code == 0 and (tmp_path / "kubeloop.yaml").exists(), as_file.output
    bad = CliRunner().invoke(main, ["init", str(tmp_path / "app"), "--compose"])
    assert bad.exit_code != 0 and "no compose file" in bad.output
    helm_alone = CliRunner().invoke(main, ["init", str(tmp_path), "--helm"])
    assert helm_alone.exit_code != 0 and "--helm goes with --compose" in helm_alone.output
    with_port = CliRunner().invoke(main, ["init", str(tmp_path), "--compose", "--port", "80"])
    assert with_port.exit_code != 0 and "ports come from the compose file" in with_port.output
    wrong_name = CliRunner().invoke(
        main, ["init", str(tmp_path), "--compose", "--name", "Bad_Name"]
    )
    assert wrong_name.exit_code != 0 and "not a valid project name" in wrong_name.output


def test_any_shape_of_compose_file_gives_files_or_a_clear_error(tmp_path: Path) -> None:
    """Compose files are user input: a seeded random walk over the keys kubeloop reads,
    with values of every type, ends in a valid project or a KubeloopError, never in
    another exception."""
    import random

    from kubeloop.compose._load import check_shapes

    rng = random.Random(7)
    write(tmp_path, {"Dockerfile": "FROM python:3.11-slim\nEXPOSE 80\n", "src/a.py": "",
                     "a.env": "A=1\n", "f.txt": "x\n"})  # fmt: skip
    service_keys = {
        "image": None, "build": ["context", "dockerfile", "args", "target"], "ports": None,
        "expose": None, "environment": None, "env_file": None, "command": None,
        "entrypoint": None, "healthcheck": ["test", "interval", "timeout", "retries",
                                            "disable", "start_period"],
        "restart": None, "volumes": None, "depends_on": None,
        "deploy": ["replicas", "resources"], "profiles": None, "user": None,
        "cap_add": None, "extra_hosts": None, "labels": None, "stop_grace_period": None,
        "configs": None, "secrets": None, "tty": None, "networks": None,
    }  # fmt: skip
    leaves: list[Any] = [None, True, 0, 3, -1, 1.5, "", "x", ".", "./src", "./src:/app",
                         "80", "8080:80", "a.env", "f.txt", "v:/data", "/abs", "10s", "1m",
                         "CMD", "s2", ["CMD", "true"], ["NONE"], "s1", "99999",
                         "redis:7"]  # fmt: skip

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 2 or roll < 0.65:
            return rng.choice(leaves)
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["target", "source", "type", "condition", "limits", "cpus", "memory", "file",
                "path", "service", "s1", "s2"]  # fmt: skip
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    outcomes = {"files": 0, "error": 0}
    for _ in range(3000):
        services: dict[str, Any] = {}
        for name in ("s1", "s2"):
            service: dict[str, Any] = {"image": "img"} if rng.random() < 0.5 else {"build": "."}
            for key in rng.sample(sorted(service_keys), rng.randint(1, 2)):
                sub = service_keys[key]
                service[key] = ({k: value(1) for k in rng.sample(sub, rng.randint(1, len(sub)))}
                                if sub and rng.random() < 0.7 else value())  # fmt: skip
            services[name] = service
        data = {"services": services, "volumes": {"v": {}},
                "configs": {"x": {"file": "f.txt"}}, "secrets": {"x": {"content": "s"}}}  # fmt: skip
        try:
            check_shapes(data, tmp_path / "compose.yaml")
            project_files(translate(data, tmp_path, "p", "compose.yaml"), "compose.yaml")
            outcomes["files"] += 1
        except KubeloopError:
            outcomes["error"] += 1
    assert outcomes["files"] > 100 and outcomes["error"] > 1000, outcomes
