"""`backbone`: run the whole system locally and manage the local stack.

    backbone run                    local stack + all services (+ sample data), Ctrl-C stops all
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
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.auth import new_key
from shared.stack import LocalStack, stop_process

# Each service's HTTP port for a local run, handed to it as <NAME>_PORT.
SERVICES = {"membership": 8101, "events": 8102, "metrics": 8103, "notify": 8104}


def _stack_command(args: argparse.Namespace) -> int:
    stack = LocalStack()
    if args.action == "up":
        state = stack.up(args.kafka_port, args.mongo_port)
        print(f"kafka  {state.endpoints.bootstrap_servers}  (pid {state.kafka_pid})")
        print(f"mongo  {state.endpoints.mongo_uri}  (pid {state.mongo_pid})")
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


def _wait_ready(name: str, port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see .backbone/logs/{name}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout:.0f}s; see .backbone/logs/{name}.log")


def _run_command(args: argparse.Namespace) -> int:
    external = "BACKBONE_KAFKA_BOOTSTRAP_SERVERS" in os.environ
    stack = LocalStack()
    env = dict(os.environ)
    env.update({f"{name.upper()}_PORT": str(port) for name, port in SERVICES.items()})
    # A local run without a configured operator key gets a fresh one, printed once below.
    generated_key = None if env.get("BACKBONE_AUTH_OPERATOR_KEY") else new_key()[1]
    if generated_key:
        env["BACKBONE_AUTH_OPERATOR_KEY"] = generated_key
    # Notify reads KPI figures for digests from the metrics service.
    env.setdefault("NOTIFY_METRICS_URL", f"http://127.0.0.1:{SERVICES['metrics']}")
    env.setdefault("NOTIFY_METRICS_API_KEY", env["BACKBONE_AUTH_OPERATOR_KEY"])
    if not external:
        print("starting the local stack (Tansu for Kafka, SecantusDB for MongoDB) ...", flush=True)
        env.update(stack.up().endpoints.env())
    os.makedirs(".backbone/logs", exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        for name in SERVICES:
            log = open(f".backbone/logs/{name}.log", "ab")
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}.app"], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name, port in SERVICES.items():
            _wait_ready(name, port, processes[name])
        print("\nBackbone is running. Logs: .backbone/logs/. Ctrl-C stops everything.\n")
        for name, port in SERVICES.items():
            print(f"  {name:<11} http://127.0.0.1:{port}/docs   metrics :{port}/metrics   ready :{port}/readyz")
        print(f"\n  KPI pages   http://127.0.0.1:{SERVICES['metrics']}/ui/   (sign in with an API key)")
        if generated_key:
            print(f"  operator key for this run: {generated_key}  (Authorization: Bearer <key>)")
        _load_sample_if_empty(f"http://127.0.0.1:{SERVICES['membership']}", env["BACKBONE_AUTH_OPERATOR_KEY"])
        print(flush=True)
        while not stopping:
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
        if not external:
            stack.down()
        print("stopped")
    return code


def _membership_client(url: str | None, key: str | None) -> httpx.Client:
    url = url or os.environ.get("BACKBONE_MEMBERSHIP_URL", f"http://127.0.0.1:{SERVICES['membership']}")
    key = key or os.environ.get("BACKBONE_API_KEY") or os.environ.get("BACKBONE_AUTH_OPERATOR_KEY")
    if not key:
        raise SystemExit("an API key is needed: --key, BACKBONE_API_KEY or BACKBONE_AUTH_OPERATOR_KEY")
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60.0)


def _load_sample_if_empty(url: str, key: str) -> None:
    from services.membership.client import load_sample  # the membership API's client side

    with _membership_client(url, key) as client:
        if client.get("/partnerships", params={"limit": 1}).json()["total"] == 0:
            print("loading the sample state ...", flush=True)
            created = load_sample(client)
            print("  " + ", ".join(f"{n} {kind}" for kind, n in created.items()), flush=True)


def _sample_command(args: argparse.Namespace) -> int:
    from services.membership.client import load_sample

    with _membership_client(args.url, args.key) as client:
        created = load_sample(client)
    print("created: " + ", ".join(f"{n} {kind}" for kind, n in created.items()))
    return 0


def _roster_command(args: argparse.Namespace) -> int:
    from services.membership.client import export_roster, import_roster

    with _membership_client(args.url, args.key) as client:
        if args.action == "export":
            sys.stdout.write(export_roster(client, args.partnership))
            return 0
        if not args.file:
            raise SystemExit("roster import needs a FILE")
        report = import_roster(client, args.partnership, Path(args.file))
    for error in report.pop("errors"):
        print(f"line {error['line']}: {error['reason']}", file=sys.stderr)
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.items()))
    return 0 if report["imported"] == report["rows"] else 2


def asyncapi_documents() -> dict[str, dict]:
    """Each service's AsyncAPI document, for the deployment's broker address (kafka:9092)."""
    import importlib

    from shared.asyncapi import document
    from shared.settings import KafkaSettings, ServiceSettings

    documents = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.app")
        [settings_class] = [v for v in vars(module).values()
                            if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings]
        app = module.create_app(settings_class(kafka=KafkaSettings(bootstrap_servers="kafka:9092", namespace="")))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backbone", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the local stack and all services until Ctrl-C")
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
