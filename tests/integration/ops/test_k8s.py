"""The Kubernetes manifests, checked offline: the production overlay renders, every object is
valid against the Kubernetes 1.32 schemas (strict: unknown fields fail), and it runs what an
operator needs (replicas per consumer service, probes, budgets, monitoring, secrets by reference)."""

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.integration.ops.kustomize import find, render

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
SERVICES = ("membership", "events", "metrics", "notify")
CONSUMERS = ("events", "metrics", "notify")  # read topics in consumer groups


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render(K8S / "overlays" / "production")


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_every_object_is_valid_for_kubernetes(production):
    for obj in production:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD, checked below
        kubernetes_validate.validate(obj, "1.32.0", strict=True)
    for obj in render(K8S / "base"):
        kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_the_render_equals_kubectl_kustomize(production):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: the render above is the offline check")
    rendered = subprocess.run(["kubectl", "kustomize", K8S / "overlays" / "production"],
                              capture_output=True, text=True, check=True).stdout
    expected = {key(o): o for o in yaml.safe_load_all(rendered)}
    assert {key(o): o for o in production} == expected


def test_production_runs_several_replicas_with_probes_resources_and_budgets(production):
    for name in SERVICES:
        deployment = find(production, "Deployment", name)
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["image"] == "ghcr.io/backbone-rsp/backbone:1.0.0"
        assert container["command"] == ["python", "-m", f"services.{name}.app"]
        budget = find(production, "PodDisruptionBudget", name)
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
        assert all(o["metadata"]["namespace"] == "backbone" for o in production)
    assert all(find(production, "Deployment", n)["spec"]["replicas"] > 1 for n in CONSUMERS)


def test_secrets_are_referenced_never_inlined(production):
    assert not [o for o in production if o["kind"] == "Secret"]
    for name in SERVICES:
        [container] = find(production, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        for secret in ("BACKBONE_AUTH_OPERATOR_KEY", "BACKBONE_MONGO_URI"):
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "backbone-secrets"


def test_service_monitor_scrapes_every_service(production):
    monitor = find(production, "ServiceMonitor", "backbone")
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["endpoints"]
    for name in SERVICES:
        service = find(production, "Service", name)
        assert selector.items() <= service["metadata"]["labels"].items()
        assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]] and endpoint["path"] == "/metrics"


def test_services_authenticate_to_kafka_as_their_own_users_with_acls(production):
    config = find(production, "ConfigMap", "backbone-config")["data"]
    assert (config["BACKBONE_KAFKA_SECURITY_PROTOCOL"], config["BACKBONE_KAFKA_SASL_MECHANISM"]) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    for name in SERVICES:
        [container] = find(production, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["BACKBONE_KAFKA_SASL_USERNAME"]["value"] == name
        assert env["BACKBONE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "backbone-kafka-users",
            "key": name,
        }
    [acls] = find(production, "Job", "kafka-acls")["spec"]["template"]["spec"]["containers"]
    assert "kafka-acls.sh" in acls["command"][-1] and "--resource-pattern-type prefixed" in acls["command"][-1]
