"""The ``kubeloop.yaml`` schema (pydantic v2); ``kubeloop config schema`` publishes it as
JSON Schema for editor completion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Artifact(Strict):
    """An image kubeloop builds. Manifests name it by ``image``; kubeloop replaces that
    name with the built, content-tagged reference."""

    image: str = Field(description="Image name used in the manifests, e.g. 'add'.")
    context: str = Field(".", description="Build context, relative to kubeloop.yaml.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile path inside the context.")
    builder: Literal["docker", "buildah", "podman", "cluster"] = Field(
        "docker",
        description="docker, buildah or podman on this machine, or cluster: a rootless "
        "BuildKit pod in the cluster (no container engine needed here).",
    )
    build_args: dict[str, str] = Field(default_factory=dict, alias="buildArgs")
    target: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=128,
        description="The stage of a multi-stage Dockerfile to build (default: the last).",
    )


class HelmRelease(Strict):
    chart: str = Field(description="Chart directory, relative to kubeloop.yaml.")
    release: str | None = Field(None, description="Release name (default: the project name).")
    values_files: list[str] = Field(default_factory=list, alias="valuesFiles")
    set: dict[str, str] = Field(default_factory=dict)


class Manifests(Strict):
    raw: list[str] = Field(default_factory=list, description="YAML files or globs.")
    templates: list[str] = Field(
        default_factory=list,
        description="Jinja2 templates (sandboxed; undefined variables are errors).",
    )
    kustomize: list[str] = Field(default_factory=list, description="Kustomization directories.")
    helm: list[HelmRelease] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Manifests:
        if not (self.raw or self.templates or self.kustomize or self.helm):
            raise ValueError("name at least one of raw, templates, kustomize or helm")
        return self


class PortForward(Strict):
    resource: str = Field(description="service/NAME, deployment/NAME or pod/NAME.")
    port: int = Field(ge=1, le=65535, description="Port on the resource.")
    local_port: int | None = Field(None, alias="localPort", ge=0, le=65535)
    namespace: str | None = None


class SyncSpec(Strict):
    """A local folder kept equal to a container path in every pod the selector picks."""

    selector: dict[str, str] = Field(description="Pod labels, e.g. {app: add}.")
    container: str | None = Field(None, description="Default: the pod's first container.")
    src: str = Field(description="Local folder, relative to kubeloop.yaml.")
    dest: str = Field(description="Absolute path in the container.", pattern=r"^/")
    exclude: list[str] = Field(default_factory=list, description="gitignore-style patterns.")
    two_way: bool = Field(
        False,
        alias="twoWay",
        description="Also bring changes made in the container back (paths the app writes); "
        "a file changed on both sides is kept twice and reported, never overwritten.",
    )
    restart: Literal["none", "process", "container"] = Field(
        "none",
        description="After a change: nothing; restart the process (kubeloop's supervisor "
        "keeps the container and its synced files); or restart the container.",
    )


class BridgeEntry(Strict):
    """A workload whose traffic for a port goes to a command on this machine, which
    reaches the cluster as the pod would (``kubeloop bridge``; started by ``dev``)."""

    workload: str = Field(description="KIND/NAME (deployment/web) or a Deployment's NAME.")
    port: int = Field(ge=1, le=65535, description="The container port whose traffic comes here.")
    local_port: int | None = Field(None, alias="localPort", ge=1, le=65535,
                                   description="Where the command listens (default: port).")  # fmt: skip
    container: str | None = Field(None, description="Default: the pod's first container.")
    command: list[str] = Field(min_length=1, description="Run from kubeloop.yaml's folder.")
    env: dict[str, str] = Field(default_factory=dict, description="Set or override variables.")
    mode: Literal["steal", "personal", "swap"] = Field(
        "steal",
        description="steal: every connection to the port comes here; personal: only HTTP "
        "requests with the header; swap: the app container is replaced by kubeloop's agent.",
    )
    header: str | None = Field(
        None,
        description="personal mode: 'NAME: VALUE' routed here (default: "
        "'X-Kubeloop-Session: <your user name>').",
    )
    env_include: list[str] = Field(
        default_factory=list,
        alias="envInclude",
        description="Only the pod's variables matching one of these patterns (AWS_*).",
    )
    env_exclude: list[str] = Field(
        default_factory=list,
        alias="envExclude",
        description="None of the pod's variables matching these patterns.",
    )
    outbound: Literal["auto", "namespace", "proxy"] = Field(
        "auto",
        description="How the command reaches the cluster: its own network namespace "
        "(every program), or HTTP_PROXY/ALL_PROXY (programs that honour them); auto: the "
        "namespace where this machine allows it.",
    )


class TestEntry(Strict):
    """A test or lint command run in the cluster (``kubeloop test``; ``on: sync`` also
    runs it in ``dev`` after each sync)."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    command: list[str] = Field(min_length=1, description="Run in the container, no shell.")
    in_: Literal["dev", "job"] = Field(
        "dev",
        alias="in",
        description="dev: exec in a running (synced) container of the workload; job: a Job "
        "from the built image with the workload's env, ConfigMaps and Secrets.",
    )
    workload: str = Field(description="KIND/NAME (deployment/web) or a Deployment's NAME.")
    container: str | None = Field(None, description="Default: the pod's first container.")
    timeout: float = Field(300, gt=0, le=86400, description="Seconds; then it is killed.")
    junit: str | None = Field(
        None,
        pattern=r"^/",
        description="JUnit XML file the command writes in the container: read back and "
        "summarised; a run that executed no test fails.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Set or override variables.")
    on: Literal["demand", "sync"] = Field(
        "demand", description="sync: 'kubeloop dev' also runs it after each sync."
    )

    @model_validator(mode="before")
    @classmethod
    def _on_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare 'on' key as the boolean true (as GitHub Actions files do).
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


def _ignore_rule(text: str) -> str:
    from kubeloop.parity.ignore import IgnoreRule  # at validation time: no import cycle

    IgnoreRule.parse(text)  # its ValueError names the rule and the syntax
    return text


class ParitySettings(Strict):
    """``kubeloop parity``: the differences between environments that are meant."""

    ignore: list[Annotated[str, AfterValidator(_ignore_rule)]] = Field(
        default_factory=list,
        description="Expected differences: 'KIND/NAME: FIELD' (deployment/web: replicas), "
        "'KIND/NAME' (a whole object) or 'FIELD' (every object); wildcards * ? [] work.",
    )
    ignore_live: list[Annotated[str, AfterValidator(_ignore_rule)]] = Field(
        default_factory=list,
        alias="ignoreLive",
        description="With --live: fields the cluster changes by design (an autoscaler's "
        "'deployment/web: replicas'); same syntax as ignore.",
    )


class DeploySettings(Strict):
    prune: bool = True
    timeout: float = Field(120, gt=0, description="Seconds to wait for the rollout.")


class DevSettings(Strict):
    cleanup: bool = Field(False, description="Delete what 'dev' deployed when it stops.")
    keep_changes: bool = Field(
        False,
        alias="keepChanges",
        description="Leave dev mode's change to workloads (the process supervisor for "
        "'restart: process') in place when 'dev' stops; by default it is undone.",
    )
    debounce_ms: int = Field(50, alias="debounceMs", ge=0)
    ignore: list[str] = Field(default_factory=list, description="Extra paths not to watch.")


class Environment(Strict):
    """Overrides for one environment; unset fields keep the project's values."""

    namespace: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    manifests: Manifests | None = None
    port_forward: list[PortForward] | None = Field(None, alias="portForward")
    sync: list[SyncSpec] | None = None
    bridge: list[BridgeEntry] | None = None
    artifacts: list[Artifact] | None = None
    deploy: DeploySettings | None = None
    dev: DevSettings | None = None
    context: str | None = Field(None, description="kubeconfig context for this environment.")


class Project(Strict):
    """A kubeloop project: what to build, what to deploy, how to reach it."""

    api_version: Literal["kubeloop/v1"] = Field("kubeloop/v1", alias="apiVersion")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=53)
    namespace: str = "default"
    artifacts: list[Artifact] = Field(default_factory=list)
    manifests: Manifests
    values: dict[str, Any] = Field(default_factory=dict, description="Template values.")
    port_forward: list[PortForward] = Field(default_factory=list, alias="portForward")
    sync: list[SyncSpec] = Field(default_factory=list, description="Live sync rules for dev.")
    bridge: list[BridgeEntry] = Field(
        default_factory=list, description="Workloads run on this machine (kubeloop bridge, dev)."
    )
    test: list[TestEntry] = Field(
        default_factory=list, description="Tests and linters run in the cluster (kubeloop test)."
    )
    deploy: DeploySettings = Field(default_factory=lambda: DeploySettings.model_validate({}))
    dev: DevSettings = Field(default_factory=lambda: DevSettings.model_validate({}))
    parity: ParitySettings = Field(default_factory=lambda: ParitySettings.model_validate({}))
    environments: dict[str, Environment] = Field(default_factory=dict)
    context: str | None = Field(
        None, description="kubeconfig context (default: kubeloop's cluster)."
    )

    @model_validator(mode="after")
    def _unique_images(self) -> Project:
        names = [a.image for a in self.artifacts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"artifact images must be unique; repeated: {', '.join(duplicates)}")
        tests = [t.name for t in self.test]
        repeated = sorted({n for n in tests if tests.count(n) > 1})
        if repeated:
            raise ValueError(f"test names must be unique; repeated: {', '.join(repeated)}")
        return self


def json_schema() -> dict[str, Any]:
    schema = Project.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kubeloop.yaml"
    return schema
