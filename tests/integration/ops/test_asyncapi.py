"""The AsyncAPI documents: committed ones equal what FastStream generates now, the official
AsyncAPI parser (@asyncapi/parser, from the npm registry) accepts each with no error and rejects
a broken one, and every service serves its own."""

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from cli.main import SERVICES, asyncapi_documents

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "asyncapi"
PARSER = "@asyncapi/parser@3.6.3"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The parser, installed once into an ignored folder of the checkout."""
    folder = ROOT / ".backbone" / "node"
    if not (folder / "node_modules" / "@asyncapi" / "parser").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder), PARSER],
                       check=True, capture_output=True, timeout=300)
    return folder / "node_modules"


def parse(files: list[Path], node_modules: Path) -> list[dict]:
    result = subprocess.run(["node", Path(__file__).with_name("validate_asyncapi.js"), *files], capture_output=True,
                            text=True, env=os.environ | {"NODE_PATH": str(node_modules)}, timeout=120, check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_committed_documents_are_up_to_date():
    generated = asyncapi_documents()
    for name in SERVICES:
        committed = json.loads((DOCS / f"{name}.json").read_text())
        assert committed == generated[name], f"docs/asyncapi/{name}.json is stale: run `backbone asyncapi`"


def test_the_asyncapi_parser_accepts_every_document_and_rejects_a_broken_one(node_modules, tmp_path):
    broken = json.loads((DOCS / "events.json").read_text())
    del broken["info"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    results = parse([*(DOCS / f"{n}.json" for n in SERVICES), tmp_path / "broken.json"], node_modules)
    assert [r["errors"] for r in results[:-1]] == [[]] * len(SERVICES)
    assert all(r["channels"] >= 3 for r in results[:-1])
    assert results[-1]["errors"], "the parser must refuse a document without info"


def test_documents_name_each_topic_and_its_event_types():
    events = json.loads((DOCS / "events.json").read_text())
    addresses = {c["address"] for c in events["channels"].values()}
    assert {"backbone.inbound.{key_id}", "backbone.outcomes", "backbone.activities", "backbone.deadletter"} <= addresses
    schemas = json.dumps(events["components"]["schemas"])
    assert "org.backbone.hire.recorded.v1" in schemas and "HireRecorded" in schemas


@pytest.mark.integration
def test_each_service_serves_its_document(start_service):
    for name in SERVICES:
        served = httpx.get(start_service(name).url + "/asyncapi.json").json()
        assert served["info"]["title"] == f"Backbone {name} service" and served["asyncapi"] == "3.0.0"
