"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose file is
valid against the official Compose Specification schema, pins its images, health-checks every
service, configures the services only with settings they have, and the services start and get
ready with exactly the variables the compose file gives them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from services.events.app import EventsSettings
from services.membership.app import MembershipSettings
from services.metrics.app import MetricsSettings
from services.notify.app import NotifySettings
from shared.auth import AuthSettings
from shared.settings import KafkaSettings, MongoSettings

ROOT = Path(__file__).resolve().parents[3]
BACKBONE = {"membership": MembershipSettings, "events": EventsSettings, "metrics": MetricsSettings,
            "notify": NotifySettings}
SHARED = {"BACKBONE_KAFKA_": KafkaSettings, "BACKBONE_MONGO_": MongoSettings, "BACKBONE_AUTH_": AuthSettings}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, as `docker compose config` does."""

    def value(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", value, text)


def compose(env: dict[str, str] | None = None) -> dict:
    env = env if env is not None else {"BACKBONE_AUTH_OPERATOR_KEY": "k" * 32, "GRAFANA_ADMIN_PASSWORD": "p",
                                       **{f"KAFKA_{name.upper()}_PASSWORD": name * 3 for name in BACKBONE}}
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    jsonschema.Draft201909Validator(schema).validate(compose())
    with pytest.raises(AssertionError, match="BACKBONE_AUTH_OPERATOR_KEY"):
        compose({})  # no operator key, no system


def test_images_are_pinned_and_every_long_running_service_is_health_checked():
    services = compose()["services"]
    assert {"kafka", "mongo", "prometheus", "grafana", *BACKBONE} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned to a version"
        if "profiles" not in service:  # one-shot jobs excepted
            assert service["healthcheck"]["test"], name
    assert all(
        services[n]["build"] == "." and services[n]["image"] == services["membership"]["image"] for n in BACKBONE
    )
    assert "--replSet" in services["mongo"]["command"] and "rs.initiate" in str(services["mongo"]["healthcheck"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == 3
    assert "broker,controller" == services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper


def setting_exists(variable: str, service: str) -> bool:
    for prefix, settings in SHARED.items():
        if variable.startswith(prefix):
            return variable.removeprefix(prefix).lower() in settings.model_fields
    prefix = f"{service.upper()}_"
    return variable.startswith(prefix) and variable.removeprefix(prefix).lower() in BACKBONE[service].model_fields


def test_services_are_configured_only_with_settings_they_have():
    services = compose()["services"]
    for name in BACKBONE:
        environment = services[name]["environment"]
        unknown = [v for v in environment if v != "SERVICE_PORT" and not setting_exists(v, name)]
        assert unknown == [], f"{name} gets variables no setting reads: {unknown}"
        assert environment["BACKBONE_KAFKA_ENABLE_IDEMPOTENCE"] == "true"


def test_dockerfile_lints_clean_and_runs_as_non_root():
    result = subprocess.run(
        [Path(sys.executable).with_name("hadolint"), ROOT / "Dockerfile"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0") and "HEALTHCHECK" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"shared", "services", "pyproject.toml"} & set(ignored)


def test_services_start_with_the_compose_environment(start_service, stack):
    """Each service gets the compose file's variables; only the endpoints point at the local stack
    (and idempotence and SASL are off: Tansu has neither)."""
    local = {"kafka:9092": stack.bootstrap_servers, "mongodb://mongo:27017/?replicaSet=rs0": stack.mongo_uri,
             "0.0.0.0": "127.0.0.1"}
    services = compose()["services"]
    for name in BACKBONE:
        environment = {k: local.get(str(v), str(v)) for k, v in services[name]["environment"].items()}
        environment["BACKBONE_KAFKA_ENABLE_IDEMPOTENCE"] = "false"
        environment["BACKBONE_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"  # Tansu: no SASL
        for variable in (
            "BACKBONE_KAFKA_SASL_MECHANISM",
            "BACKBONE_KAFKA_SASL_USERNAME",
            "BACKBONE_KAFKA_SASL_PASSWORD",
        ):
            environment.pop(variable)
        environment.pop(f"{name.upper()}_PORT")  # a free port instead of the fixed one
        environment.pop("NOTIFY_METRICS_URL", None)
        environment.pop("NOTIFY_METRICS_API_KEY", None)
        running = start_service(name, environment)
        assert httpx.get(running.url + "/readyz").json()["status"] == "ready"
        assert httpx.get(running.url + "/whoami", headers={"authorization": "Bearer " + "k" * 32}).status_code == 200


def test_kafka_authenticates_every_client_and_authorizes_by_acl():
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    # Every listener reachable from outside the container asks for SCRAM; the others are loopback.
    assert {name for name, address in listeners.items() if not address.startswith("127.0.0.1:")} == {
        "INTERNAL",
        "PARTNER",
    }
    assert protocols["INTERNAL"] == protocols["PARTNER"] == "SASL_PLAINTEXT"
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert services["kafka"]["ports"] == ["9094:9094"]
    users = {services[name]["environment"]["BACKBONE_KAFKA_SASL_USERNAME"] for name in BACKBONE}
    assert users == set(BACKBONE)  # each service its own user
    assert "kafka-acls.sh" in services["kafka-setup"]["command"][0]
