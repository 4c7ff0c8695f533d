"""Every HTTP API fuzzed from its own OpenAPI document with schemathesis, against the real
services on the real stack: no input, valid or not, gets a server error."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

KEY = "fuzz-tests-operator-key"


@pytest.mark.parametrize("service", ["membership", "events", "metrics", "notify"])
def test_no_request_makes_a_server_error(service, start_service, tmp_path):
    running = start_service(service, {"BACKBONE_AUTH_OPERATOR_KEY": KEY})
    result = subprocess.run(
        [Path(sys.executable).with_name("schemathesis"), "run", f"{running.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "10", "--generation-deterministic",
         "--request-timeout", "10", "-H", f"Authorization: Bearer {KEY}", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout and "generated" in result.stdout
