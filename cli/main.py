"""`backbone`: run the whole system locally and manage the local stack.

    backbone run [--data-dir DIR] [--fresh] [--port-base N]
                                    local stack + all services (+ sample data into an empty
                                    installation), state kept in DIR (.backbone), Ctrl-C stops all
    backbone backup FILE | restore FILE [--data-dir DIR]
                                    one archive of an installation's database and topics
    backbone stack up|down|status   the local Kafka- and MongoDB-protocol servers
    backbone stack env              the settings to point a service at the running stack
    backbone kpis rebuild           recompute all KPIs from the topics into a new store version
    backbone asyncapi [--out DIR]   write each service's AsyncAPI document (docs/asyncapi/)
    backbone sample load            load the sample state (partnerships, members, teams) via the API
    backbone roster import FILE -p ID   import a roster CSV into a partnership (bad rows reported)
    backbone roster export -p ID    print a partnership's roster as CSV

The last three talk to the membership API: --url (or BACKBONE_MEMBERSHIP_URL) and a key (--key,
or BACKBONE_API_KEY, or BACKBONE_AUTH_OPERATOR_KEY).
"""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli.archive import ArchiveError
from cli.membership_client import ClientError, export_roster, import_roster, load_sample
from cli.sample_history import load_history
from cli.stack import LocalStack, dies_with_parent, runs_module, stop_process
from shared.auth import new_key
from shared.service import ServiceSpec

SERVICE_NAMES = ("membership", "events", "metrics", "notify")
DEFAULT_DATA_DIR = Path(".backbone")
DEFAULT_PORT_BASE = 8100


def service_specs() -> dict[str, ServiceSpec]:
    """Each service's own spec (services/<name>/app.py SERVICE): name, settings, app factory, port."""
    return {name: importlib.import_module(f"services.{name}.app").SERVICE for name in SERVICE_NAMES}


def ports(base: int) -> dict[str, int]:
    """A local installation's ports: the services at base+1.., the stack's servers after them."""
    names = [*SERVICE_NAMES, "kafka", "mongo", "s3"]
    return {name: base + 1 + i for i, name in enumerate(names)}


# Each service's HTTP port for a local run, handed to it as <NAME>_PORT.
SERVICES = {name: port for name, port in ports(DEFAULT_PORT_BASE).items() if name in SERVICE_NAMES}


def _stack_command(args: argparse.Namespace) -> int:
    stack = LocalStack()
    if args.action == "up":
        started = stack.up(args.kafka_port, args.mongo_port)
        print(f"kafka  {started.endpoints.bootstrap_servers}  (pid {started.kafka_pid})")
        print(f"mongo  {started.endpoints.mongo_uri}  (pid {started.mongo_pid})")
    elif args.action == "down":
        stack.down()
        print("stack stopped")
    elif args.action == "status":
        state = stack.running()
        print(f"running: {state.endpoints}" if state else "not running")
        return 0 if state else 1
    elif args.action == "env":
        state = stack.running()
        if not state:
            print("stack not running: backbone stack up", file=sys.stderr)
            return 1
        for key, value in state.endpoints.env().items():
            print(f"export {key}='{value}'")
    return 0


def _wait_ready(name: str, port: int, process: subprocess.Popen, logs: Path, timeout: float = 120.0) -> None:
    # 120 s: after a restore, a service's first consumer-group joins took 66 s on a loaded 2-core machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see {logs / name}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout:.0f}s; see {logs / name}.log")


def installation(data_dir: Path) -> LocalStack:
    """The durable stack whose data (and stack.json, server logs) live in data_dir."""
    return LocalStack(data_dir / "stack", data_dir=data_dir)


def _operator_key(data_dir: Path | None) -> tuple[str, bool]:
    """The operator key of this installation: configured, else made once and kept in the data dir."""
    if key := os.environ.get("BACKBONE_AUTH_OPERATOR_KEY"):
        return key, False
    stored = data_dir / "operator-key" if data_dir else None
    if stored and stored.exists():
        return stored.read_text().strip(), False
    key = new_key()[1]
    if stored:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.touch(mode=0o600)
        stored.write_text(key + "\n")
    return key, True


def _stop_leftover_services(record: Path) -> None:
    """The services a `run` that did not get to clean up (SIGKILL, power loss) left behind: they
    would hold the ports. Linux sends them SIGTERM with their parent's death (dies_with_parent);
    this waits for such a stop still in progress, and stops any that did not get the signal. It
    tells a service from a process that reused its pid by /proc, so elsewhere it stops nothing."""
    if not record.exists():
        return
    for module, pid in json.loads(record.read_text()).items():
        if runs_module(pid, module):
            print(f"stopping {module} left running by an earlier run (pid {pid})", flush=True)
            stop_process(pid, timeout=15)
    record.unlink()


def _run_command(args: argparse.Namespace) -> int:
    external = "BACKBONE_KAFKA_BOOTSTRAP_SERVERS" in os.environ
    data_dir = Path(args.data_dir)
    if args.fresh and data_dir.exists():
        installation(data_dir).down()
        shutil.rmtree(data_dir)
    logs = data_dir / "logs"
    port = ports(args.port_base)
    services = {name: port[name] for name in SERVICE_NAMES}
    stack = installation(data_dir)
    env = dict(os.environ)
    env.update({f"{name.upper()}_PORT": str(p) for name, p in services.items()})
    env["BACKBONE_AUTH_OPERATOR_KEY"], new_operator_key = _operator_key(None if external else data_dir)
    # Notify reads KPI figures for digests from the metrics service.
    env.setdefault("NOTIFY_METRICS_URL", f"http://127.0.0.1:{services['metrics']}")
    env.setdefault("NOTIFY_METRICS_API_KEY", env["BACKBONE_AUTH_OPERATOR_KEY"])
    # The KPI pages' recording and roster forms go through the events, membership and notify APIs.
    env.setdefault("METRICS_EVENTS_URL", f"http://127.0.0.1:{services['events']}")
    env.setdefault("METRICS_MEMBERSHIP_URL", f"http://127.0.0.1:{services['membership']}")
    env.setdefault("METRICS_NOTIFY_URL", f"http://127.0.0.1:{services['notify']}")
    if not external:
        print(f"starting the local stack (Tansu for Kafka, SecantusDB for MongoDB), data in {data_dir.resolve()} ...",
              flush=True)
        env.update(stack.up(port["kafka"], port["mongo"], s3_port=port["s3"]).endpoints.env())
    logs.mkdir(parents=True, exist_ok=True)
    record = data_dir / "services.json"
    _stop_leftover_services(record)
    processes: dict[str, subprocess.Popen] = {}
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        started: dict[str, int] = {}  # module -> pid, for the next run if this one is killed
        for name, spec in service_specs().items():
            log = open(logs / f"{name}.log", "ab")
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", spec.module], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=dies_with_parent,
            )
            started[spec.module] = processes[name].pid
            record.write_text(json.dumps(started))
        for name, p in services.items():
            _wait_ready(name, p, processes[name], logs)
        print(f"\nBackbone is running. Data: {data_dir.resolve()}  Logs: {logs}/. Ctrl-C stops everything.\n")
        for name, p in services.items():
            print(f"  {name:<11} http://127.0.0.1:{p}/docs   metrics :{p}/metrics   ready :{p}/readyz")
        print(f"\n  KPI pages   http://127.0.0.1:{services['metrics']}/ui/   (sign in with an API key)")
        if new_operator_key:
            print(f"  operator key: {env['BACKBONE_AUTH_OPERATOR_KEY']}  (Authorization: Bearer <key>; "
                  f"kept in {data_dir / 'operator-key'})")
        try:
            _load_sample_if_empty(f"http://127.0.0.1:{services['membership']}", env["BACKBONE_AUTH_OPERATOR_KEY"],
                                  f"http://127.0.0.1:{services['events']}")
        except (ClientError, httpx.HTTPError) as exc:  # the installation itself is up: it stays up
            print(f"the sample could not be loaded ({exc}); Backbone keeps running without it "
                  f"(`backbone sample load` loads the sample state)", file=sys.stderr, flush=True)
        print(flush=True)
        while not stopping:
            if not external:
                for name in stack.revive():
                    print(f"{name} server had stopped: restarted on its data", file=sys.stderr, flush=True)
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    stopping, code = True, 1
            time.sleep(0.3)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        code = 1
    finally:
        print("stopping services ...", flush=True)
        for process in processes.values():
            stop_process(process.pid, timeout=15)
        record.unlink(missing_ok=True)
        if not external:
            stack.down()
        print("stopped")
    return code


def _membership_client(url: str | None, key: str | None) -> httpx.Client:
    url = url or os.environ.get("BACKBONE_MEMBERSHIP_URL", f"http://127.0.0.1:{SERVICES['membership']}")
    key = key or os.environ.get("BACKBONE_API_KEY") or os.environ.get("BACKBONE_AUTH_OPERATOR_KEY")
    if not key:
        raise ClientError("an API key is needed: --key, BACKBONE_API_KEY or BACKBONE_AUTH_OPERATOR_KEY")
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60.0)


def _load_sample_if_empty(url: str, key: str, events_url: str, attempts: int = 3) -> None:
    with _membership_client(url, key) as client:
        if client.get("/partnerships", params={"limit": 1}).json()["total"] == 0:
            print("loading the sample state ...", flush=True)
            for attempt in range(1, attempts + 1):
                try:  # the loader leaves what exists as it is, so a timed-out load is simply repeated
                    created = load_sample(client)
                    break
                except httpx.TimeoutException:
                    if attempt == attempts:
                        raise
                    print("  the membership service is slow to answer; loading again ...", flush=True)
            print("  " + ", ".join(f"{n} {kind}" for kind, n in created.items()), flush=True)
            print("loading two program years of sample history ...", flush=True)
            print(f"  {load_history(client, events_url)} events", flush=True)


def _sample_command(args: argparse.Namespace) -> int:
    with _membership_client(args.url, args.key) as client:
        created = load_sample(client)
    print("created: " + ", ".join(f"{n} {kind}" for kind, n in created.items()))
    return 0


def _roster_command(args: argparse.Namespace) -> int:
    with _membership_client(args.url, args.key) as client:
        if args.action == "export":
            export_roster(client, args.partnership, sys.stdout)
            return 0
        if not args.file:
            raise ClientError("roster import needs a FILE")
        report = import_roster(client, args.partnership, Path(args.file))
    for error in report.pop("errors"):
        print(f"line {error['line']}: {error['reason']}", file=sys.stderr)
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.items()))
    return 0 if report["imported"] == report["rows"] else 2


def asyncapi_documents() -> dict[str, dict]:
    """Each service's AsyncAPI document, for the deployment's broker address (kafka:9092)."""
    from shared.asyncapi import document
    from shared.settings import KafkaSettings

    documents = {}
    for name, spec in service_specs().items():
        settings = spec.settings(port=spec.port, kafka=KafkaSettings(bootstrap_servers="kafka:9092", namespace=""))
        app = spec.create_app(settings)
        documents[name] = document(app.state.runtime.broker, name, app.description)
    return documents


def _asyncapi_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in asyncapi_documents().items():
        (out / f"{name}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out / name}.json")
    return 0


def _kpis_command(args: argparse.Namespace) -> int:
    from services.metrics.rebuild import main as rebuild  # service code only for this subcommand

    return rebuild()


def _archive_command(args: argparse.Namespace) -> int:
    from cli.archive import backup, restore

    data_dir = Path(args.data_dir)
    if args.command == "backup":
        counts = backup(installation(data_dir), Path(args.file))
    else:
        counts = restore(installation(data_dir), Path(args.file))
    print(f"{args.command}: {counts['documents']} documents, {counts['records']} records ({args.file})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="backbone", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where the installation keeps its state")
    data.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                      help="services on N+1..N+4, Kafka, MongoDB and S3 on N+5..N+7")
    run = commands.add_parser("run", parents=[data], help="run the local stack and all services until Ctrl-C")
    run.add_argument("--fresh", action="store_true", help="delete the data directory first: start empty")
    for name, what in (("backup", "write"), ("restore", "read")):
        archive = commands.add_parser(name, parents=[data], help=f"{what} one archive of the database and topics")
        archive.add_argument("file")
    stack = commands.add_parser("stack", help="manage the local Kafka/MongoDB servers")
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.add_argument("--kafka-port", type=int, default=None)
    stack.add_argument("--mongo-port", type=int, default=None)
    kpis = commands.add_parser("kpis", help="the metrics service's KPI store (uses the BACKBONE_*/METRICS_ settings)")
    kpis.add_argument("action", choices=["rebuild"])
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", help="membership API base URL")
    api.add_argument("--key", help="API key (else from the environment)")
    sample = commands.add_parser("sample", parents=[api], help="the sample state of partnerships")
    sample.add_argument("action", choices=["load"])
    roster = commands.add_parser("roster", parents=[api], help="import or export a partnership's roster (CSV)")
    roster.add_argument("action", choices=["import", "export"])
    roster.add_argument("file", nargs="?", help="the CSV file to import")
    roster.add_argument("-p", "--partnership", required=True)
    asyncapi = commands.add_parser("asyncapi", help="write the services' AsyncAPI documents")
    asyncapi.add_argument("--out", default="docs/asyncapi")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (ClientError, ArchiveError) as exc:
        print(exc, file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("backup", "restore"):
        return _archive_command(args)
    if args.command == "asyncapi":
        return _asyncapi_command(args)
    if args.command == "sample":
        return _sample_command(args)
    if args.command == "roster":
        return _roster_command(args)
    if args.command == "stack":
        return _stack_command(args)
    if args.command == "kpis":
        return _kpis_command(args)
    return _run_command(args)


if __name__ == "__main__":
    sys.exit(main())
