"""What `backbone run` does so that a SIGKILL of it leaves nothing holding its ports: its services
stop with it (dies_with_parent), and a next run stops what an earlier one recorded and left."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import _stop_leftover_services
from cli.stack import _alive, runs_module

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-m", "timeit", "-n", "1", "import time; time.sleep(60)"]  # a `python -m` that waits


def within(seconds: float, condition) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def running(pid: int) -> bool:
    return runs_module(pid, "timeit")  # its command line is the new one once Python has started


def gone(pid: int) -> bool:
    return not runs_module(pid, "timeit")  # gone, or a zombie its new parent has not reaped yet


def test_a_recorded_pid_is_stopped_only_while_it_runs_that_module(tmp_path):
    sleeper = subprocess.Popen(SLEEPER)
    try:
        assert within(10, lambda: running(sleeper.pid))
        assert not runs_module(sleeper.pid, "services.events.app")  # a reused pid is left alone
        record = tmp_path / "services.json"
        record.write_text(json.dumps({"services.events.app": sleeper.pid}))
        _stop_leftover_services(record)
        assert _alive(sleeper.pid) and not record.exists()
        record.write_text(json.dumps({"timeit": sleeper.pid}))
        _stop_leftover_services(record)
        assert not _alive(sleeper.pid) and not record.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_stops_when_its_parent_is_killed(tmp_path):
    # The parent starts the child as `run` starts a service, prints its pid, and waits.
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from cli.stack import dies_with_parent\n"
        f"child = subprocess.Popen({SLEEPER!r}, start_new_session=True, preexec_fn=dies_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        child = int(parent.stdout.readline())
        assert within(10, lambda: running(child))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert within(10, lambda: gone(child))
    finally:
        parent.kill()
        parent.wait()
