"""Runs the whole suite on one machine: broker, database, four services, gateway, demo data.

    python deploy/local/stack.py up      # start everything, print URLs, stop on Ctrl-C
    python deploy/local/stack.py start   # start everything in the background
    python deploy/local/stack.py infra   # only RabbitMQ and FerretDB (what the tests need)
    python deploy/local/stack.py stop    # stop what start/up started

The tests use the same `Stack` class to run the suite under their own names and ports.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import ParseResult, urlparse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv" / "bin"
FERRETDB = ROOT / ".tools" / "bin" / "ferretdb"
DATA = ROOT / ".data"

# nameko service name → "module:Class" that `nameko run` starts.
SERVICES = {
    "registry": "services.registry.service:OrganisationRegistry",
    "issue_intake": "services.intake.service:IssueIntake",
    "points_bank": "services.points.service:PointsBank",
    "cadre_evaluation": "services.cadres.service:CadreEvaluation",
}


LOCAL_HOSTS = ("127.0.0.1", "localhost")


def one_server(mongo_url: str) -> ParseResult | None:
    """The URL parsed, if it names one server; None for a replica set of several hosts or an
    SRV record, which pymongo resolves."""
    parsed = urlparse(mongo_url)
    return parsed if parsed.scheme == "mongodb" and "," not in parsed.netloc else None


def local_database(mongo_url: str) -> bool:
    """Whether the database is this machine's own: the embedded FerretDB, or a server here."""
    parsed = one_server(mongo_url)
    return parsed is not None and (parsed.hostname or "127.0.0.1") in LOCAL_HOSTS


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float = 60.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rabbitmq_running() -> bool:
    try:
        return subprocess.run(["rabbitmqctl", "-q", "status"], capture_output=True).returncode == 0
    except OSError:  # not on this user's PATH (/usr/sbin)
        return False


def rabbitmq_booted() -> bool:
    command = ["rabbitmqctl", "-q", "await_startup", "--timeout", "5"]
    return subprocess.run(command, capture_output=True).returncode == 0


def running_broker() -> str | None:
    """Which broker runs: this boot's id and the broker's process id (after a reboot the same
    pid may name another), or None if no broker answers."""
    try:
        done = subprocess.run(["rabbitmqctl", "-q", "eval", "os:getpid()."], capture_output=True, text=True)
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    pid = done.stdout.strip().strip('"')
    return f"{boot} {pid}" if done.returncode == 0 and pid else None


def ensure_rabbitmq() -> bool:
    """Start the machine's RabbitMQ if it is not running. Returns True if this call started it."""
    if rabbitmq_running():
        return False
    try:
        subprocess.run(["rabbitmq-server", "-detached"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(
            "could not start RabbitMQ: Debian's RabbitMQ starts as root, so run `make run` as root, "
            "or start the broker first (`sudo rabbitmq-server -detached`)"
        ) from exc
    # `await_startup` fails at once while the Erlang node itself is still booting, so poll it.
    wait_for(rabbitmq_booted, "RabbitMQ to start (see /var/log/rabbitmq/)", timeout=120, interval=1)
    return True


def ensure_vhost(vhost: str, fresh: bool = False) -> None:
    """A RabbitMQ virtual host for the guest user; `fresh` empties it first (tests)."""
    if vhost == "/":
        return
    if fresh:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )


class PortTaken(RuntimeError):
    pass


@dataclass
class Stack:
    """Processes of one GridLink installation: data, logs and pid files under `home`."""

    home: Path = DATA
    env: dict[str, str] = field(default_factory=dict)
    gateway_port: int = 8000
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def mongo_url(self) -> str:
        return self._env().get("MONGO_URL", "mongodb://127.0.0.1:27017/")

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **self.env, **(extra or {})}
        env["PYTHONPATH"] = str(ROOT)
        env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
        return env

    def _spawn(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self._env(extra_env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        (self.home / "run" / f"{name}.pid").write_text(str(process.pid))

    # --- infrastructure -------------------------------------------------------------

    def start_database(self) -> None:
        parsed = one_server(self.mongo_url)
        if parsed is None:
            return  # servers elsewhere, which pymongo finds
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 27017
        if port_open(host, port):
            return
        if host not in LOCAL_HOSTS:
            raise RuntimeError(f"no database answers at {self.mongo_url}")
        data = self.home / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "ferretdb",
            [
                str(FERRETDB),
                "--handler=sqlite",
                # WAL with synchronous=NORMAL: a commit does not wait for a disk flush (a power
                # cut, not a crash, may lose the last ones, as with MongoDB's default journal
                # interval); statement journals stay in memory instead of temporary files.
                f"--sqlite-url=file:{data}/?_pragma=synchronous(normal)&_pragma=temp_store(memory)",
                f"--state-dir={data}",
                f"--listen-addr=127.0.0.1:{port}",
                "--telemetry=disable",
                "--log-level=warn",
                "--debug-addr=-",
            ],
            # Go's collector took a tenth of FerretDB's CPU under load; memory is cheaper here.
            {"GOGC": os.environ.get("GOGC", "400")},
        )
        wait_for(lambda: port_open(host, port), f"FerretDB on port {port}", timeout=30)
        indexer = [str(VENV_BIN / "python"), "-m", "deploy.local.ferretdb_indexes"]
        self._spawn("ferretdb-indexes", [*indexer, str(data), str(self.processes["ferretdb"].pid)])

    def start_infrastructure(self) -> None:
        local_broker = urlparse(self._env().get("AMQP_URI", "pyamqp://127.0.0.1")).hostname in (
            "127.0.0.1",
            "localhost",
        )
        if local_broker and ensure_rabbitmq():
            (self.home / "run").mkdir(parents=True, exist_ok=True)
            # Which broker: after a reboot the marker outlives it, and another may run then.
            (self.home / "run" / "rabbitmq.started").write_text(f"{running_broker()}\n")
        self.start_database()

    # --- GridLink processes ---------------------------------------------------------

    def start_service(
        self, service: str, extra_env: Mapping[str, str] | None = None, name: str | None = None
    ) -> None:
        """Start a service's process; `name` another instance of it (the tests scale out)."""
        self._spawn(
            name or service,
            [str(VENV_BIN / "nameko"), "run", "--config", "deploy/nameko.yaml", SERVICES[service]],
            extra_env,
        )

    def check_gateway_port(self) -> None:
        """Refuse a taken port before starting anything: gunicorn retries it for seconds before
        it gives up, and meanwhile whatever holds it would pass for this gateway."""
        if port_open("127.0.0.1", self.gateway_port):
            raise PortTaken(
                f"port {self.gateway_port} is taken: GridLink is running already (`make stop` "
                "stops it), or another program holds it (choose another port with GATEWAY_PORT)"
            )

    def start_gateway(self) -> None:
        self._spawn(
            "gateway",
            [str(VENV_BIN / "gunicorn"), "-c", "gateway/gunicorn.conf.py", "gateway.wsgi:app"],
            {
                "GATEWAY_BIND": f"127.0.0.1:{self.gateway_port}",
                "GRIDLINK_AUDIT_DIR": self._env().get("GRIDLINK_AUDIT_DIR", str(self.home / "audit")),
            },
        )

    def wait_until_healthy(self, services: list[str] | None = None, timeout: float = 60) -> None:
        from shared.healthcheck import service_is_healthy

        for service in services or list(SERVICES):
            wait_for(lambda s=service: self._alive(s) and service_is_healthy(s, 2), service, timeout)
        if "gateway" in self.processes:
            wait_for(lambda: port_open("127.0.0.1", self.gateway_port), "gateway", timeout)
        # A service can answer its first health call and still fail to finish starting.
        time.sleep(0.5)
        for name in self.processes:
            self._alive(name)

    def _alive(self, name: str) -> bool:
        process = self.processes.get(name)
        if process is not None and process.poll() is not None:
            log = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
        return True

    def start_all(self) -> None:
        self.check_gateway_port()
        self.start_infrastructure()
        for service in SERVICES:
            self.start_service(service)
        self.start_gateway()
        self.wait_until_healthy()

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        process = self.processes.pop(name, None)
        pid_file = self.home / "run" / f"{name}.pid"
        pid = process.pid if process else (int(pid_file.read_text()) if pid_file.exists() else None)
        pid_file.unlink(missing_ok=True)
        if pid is None or (process is None and not started_here(pid)):
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        names = [*self.processes] or [p.stem for p in (self.home / "run").glob("*.pid")]
        for name in ["gateway", *SERVICES, "ferretdb", "ferretdb-indexes"]:
            if name in names:
                self.stop_process(name)
        marker = self.home / "run" / "rabbitmq.started"
        if marker.exists():
            if marker.read_text().strip() == running_broker():  # the broker this stack started
                subprocess.run(["rabbitmqctl", "-q", "stop"], capture_output=True)
            marker.unlink()


def started_here(pid: int) -> bool:
    """Whether a pid read from a pid file still names a process of this checkout: after a crash
    or a reboot the file may outlive its process, and the pid may name another one now."""
    try:
        return str(ROOT).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def load_demo_data_once(load: Callable[[], None], mongo_url: str, marker: Path) -> bool:
    """Load the demo data unless it went into this database before (the marker names the
    database): staff may have changed it since, moved a building or closed a branch, and
    loading it again would refuse those changes and stop the start. True if it loaded now."""
    if marker.exists() and marker.read_text().strip() == mongo_url:
        return False
    load()
    marker.write_text(f"{mongo_url}\n")
    return True


def main(command: str) -> None:
    # Late publisher-confirm acks on closed healthcheck proxies are harmless; keep them quiet.
    logging.getLogger("amqp").setLevel(logging.ERROR)
    stack = Stack(env={}, gateway_port=int(os.environ.get("GATEWAY_PORT", "8000")))
    if command == "stop":
        stack.stop_all()
        print("GridLink stopped.")
        return
    if command == "infra":
        stack.start_infrastructure()
        print(f"RabbitMQ and FerretDB are up (database at {stack.mongo_url}).")
        return
    from deploy.local.demo_data import load_demo_data
    from gateway.keys import ensure_demo_key
    from gateway.staff import ensure_demo_account

    # The demo data, and a key and an account that may do everything, go into this machine's
    # database only: `make run` pointed at a real one must not open it to anyone.
    demo = local_database(stack.mongo_url) or os.environ.get("GRIDLINK_LOAD_DEMO") == "1"
    interrupt_on_sigterm()
    try:
        stack.start_all()
        if demo:
            load_demo_data_once(load_demo_data, stack.mongo_url, DATA / "demo-data.loaded")
            key = ensure_demo_key(DATA / "demo-api-key")
            username, password = ensure_demo_account(DATA / "demo-password")
    except PortTaken as exc:  # nothing started; what runs there is left alone
        raise SystemExit(str(exc)) from None
    except BaseException:  # a failure, Ctrl-C or SIGTERM: nothing is left running half-started
        stack.stop_all()
        raise
    base = f"http://127.0.0.1:{stack.gateway_port}"
    if demo:
        access = f"sign in as {username}, password {password}"
        demo_lines = (
            f"  Demo API key:         {key}\n  Try:  curl -H 'X-API-Key: {key}' {base}/api/v1/people\n"
        )
    else:
        access = "sign in with your staff account"
        demo_lines = "  No demo data, key or account: not this machine's database (GRIDLINK_LOAD_DEMO=1)\n"
    print(
        f"""
GridLink is running.
  Portal (staff, 中文):  {base}/portal/   {access}
  Gateway API:          {base}/api/v1/
  API documentation:    {base}/docs   (OpenAPI: {base}/openapi.json)
{demo_lines}  Logs: {DATA / "logs"}/
"""
    )
    if command == "start":
        print("Stop it with `make stop`.")
        return
    print("Press Ctrl-C to stop.")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop_all()
        print("GridLink stopped.")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (a CI time limit, `timeout`, `kill`) raise KeyboardInterrupt in this
    process, as Ctrl-C does, so that its clean-up (`finally`, pytest's fixture teardown) stops
    the processes it started instead of leaving them running."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


COMMANDS = ("up", "start", "stop", "infra")

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    if command not in COMMANDS:
        sys.exit(f"unknown command {command!r}: use one of {', '.join(COMMANDS)}")
    main(command)
