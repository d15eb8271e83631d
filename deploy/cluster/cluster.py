"""A local cluster on 127.0.0.1: N gateway replicas, Redis, and nginx (HTTP/2, grpc_pass) in front of them.

`make cluster` runs ``python -m deploy.cluster.cluster up``, `make cluster-stop` runs ``... down``; tests/cluster/
call `up()` and `down()` directly. Everything lives in one run directory (default build/cluster): the rendered
nginx config, the shared data directory (one key store, one usage log for every replica), each process's log and
``cluster.json`` with the PIDs, ports and the load balancer's address. `down()` stops exactly those PIDs (checking
each is still the process it started): replicas get SIGTERM and drain, nginx gets SIGTERM.

Redis is the machine's own (127.0.0.1:6379); it is started (``redis-server --daemonize yes``) only when
``redis-cli ping`` fails, and never stopped here. The replicas share one of its databases, so that sessions (and
rate limits) are one service's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TEMPLATE = HERE / "nginx.conf.template"
DEFAULT_RUN_DIR = REPO / "build" / "cluster"
STATE_FILE = "cluster.json"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS_DB = 5
START_TIMEOUT_S = 60.0

# What every replica gets unless the caller's environment says otherwise. A stream is retired after 5 minutes
# so that long-lived streams spread again over the replicas (README: Operating it).
REPLICA_DEFAULTS = {
    "INTEGRATION_API_HOST": "127.0.0.1",
    "INTEGRATION_API_MAX_CONNECTION_AGE_S": "300",
    "INTEGRATION_API_MAX_CONNECTION_AGE_GRACE_S": "30",
    "INTEGRATION_API_GRACE_PERIOD_S": "15",
}


class ClusterError(RuntimeError):
    """The cluster could not be started (or a part of it died while starting); the message says which part."""


@dataclass
class Process:
    name: str
    pid: int
    log: str
    port: int = 0  # the gRPC port of a replica, the load balancer's port for nginx
    http_port: int = 0


@dataclass
class Cluster:
    run_dir: str
    address: str  # the load balancer's, host:port
    redis_url: str
    replicas: list[Process] = field(default_factory=list)
    nginx: Process | None = None
    # Only in the process that started the cluster: lets down() reap its children (tests).
    children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def replica(self, name: str) -> Process:
        return next(replica for replica in self.replicas if replica.name == name)

    def save(self) -> None:
        state = {
            "run_dir": self.run_dir,
            "address": self.address,
            "redis_url": self.redis_url,
            "replicas": [asdict(replica) for replica in self.replicas],
            "nginx": asdict(self.nginx) if self.nginx else None,
        }
        (Path(self.run_dir) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> Cluster:
        state = json.loads((run_dir / STATE_FILE).read_text())
        nginx = Process(**state["nginx"]) if state.get("nginx") else None
        replicas = [Process(**replica) for replica in state["replicas"]]
        return cls(state["run_dir"], state["address"], state["redis_url"], replicas, nginx)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_redis() -> None:
    """Redis runs on this machine already; start it (not persisting anything) only when it does not answer."""
    if subprocess.run(["redis-cli", "ping"], capture_output=True, check=False).stdout.strip() == b"PONG":
        return
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--save", ""], check=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "ping"], capture_output=True, check=False).stdout.strip() != b"PONG":
        if time.monotonic() > deadline:
            raise ClusterError("redis-server did not answer redis-cli ping within 10 s")
        time.sleep(0.1)


def integration_api_command() -> list[str]:
    script = Path(sys.executable).with_name("integration-api")
    return [str(script)] if script.exists() else [sys.executable, "-m", "integration_api"]


def create_key(cluster: Cluster, name: str, *options: str) -> str:
    """Create an API key in the cluster's shared key store (every replica accepts it); returns the key."""
    data_dir = str(Path(cluster.run_dir) / "data")
    command = [*integration_api_command(), "keys", "create", "--name", name, "--organization", "local"]
    done = subprocess.run(
        [*command, "--project", "cluster", "--data-dir", data_dir, *options], capture_output=True, check=True
    )
    keys = [line for line in done.stdout.decode().split() if line.startswith("ia_")]
    if len(keys) != 1:
        raise ClusterError(f"`integration-api keys create` printed no key: {done.stdout.decode()!r}")
    return keys[0]


def start_replica(cluster: Cluster, name: str, env: Mapping[str, str], *, http: bool = False, port: int = 0) -> Process:
    """Start one `integration-api serve` on a free port (or `port`: a replica restarted in place)."""
    run_dir = Path(cluster.run_dir)
    port = port or free_port()
    http_port = free_port() if http else 0
    log = run_dir / f"{name}.log"
    replica_env = {
        **os.environ,
        **REPLICA_DEFAULTS,
        "INTEGRATION_API_DATA_DIR": str(run_dir / "data"),
        "INTEGRATION_API_REDIS_URL": cluster.redis_url,
        **env,
        "INTEGRATION_API_PORT": str(port),
        "INTEGRATION_API_HTTP_PORT": str(http_port),
    }
    with log.open("ab") as out:
        child = subprocess.Popen(
            [*integration_api_command(), "serve"], env=replica_env, stdout=out, stderr=out, start_new_session=True
        )
    cluster.children[child.pid] = child
    replica = Process(name, child.pid, str(log), port, http_port)
    cluster.replicas = [r for r in cluster.replicas if r.name != name] + [replica]
    return replica


def wait_serving(replica: Process, child: subprocess.Popen[bytes] | None, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the replica's health service answers SERVING."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if child is not None and child.poll() is not None:
                raise ClusterError(f"{replica.name} exited with {child.returncode}: see {replica.log}")
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"{replica.name} was not SERVING within {timeout_s:g} s: see {replica.log}")
            time.sleep(0.1)


def render_nginx_config(cluster: Cluster, lb_port: int) -> Path:
    run_dir = Path(cluster.run_dir)
    servers = "\n".join(
        f"        server 127.0.0.1:{replica.port} max_fails=1 fail_timeout=2s;" for replica in cluster.replicas
    )
    text = TEMPLATE.read_text()
    for key, value in {"run_dir": str(run_dir), "servers": servers, "lb_port": str(lb_port)}.items():
        text = text.replace("{" + key + "}", value)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "nginx-tmp" / temp).mkdir(parents=True, exist_ok=True)
    config = run_dir / "nginx.conf"
    config.write_text(text)
    return config


def start_nginx(cluster: Cluster) -> Process:
    if not Path(NGINX).exists():
        raise ClusterError(f"nginx is not installed ({NGINX}): run `bash .ci/setup.sh` as root (Debian's nginx-light)")
    run_dir = Path(cluster.run_dir)
    lb_port = free_port()
    config = render_nginx_config(cluster, lb_port)
    test = subprocess.run([NGINX, "-t", "-q", "-p", str(run_dir), "-c", str(config)], capture_output=True, check=False)
    if test.returncode != 0:
        raise ClusterError(f"nginx refused {config}: {test.stderr.decode(errors='replace').strip()}")
    log = run_dir / "nginx.log"
    with log.open("ab") as out:
        child = subprocess.Popen(
            [NGINX, "-p", str(run_dir), "-c", str(config)], stdout=out, stderr=out, start_new_session=True
        )
    cluster.children[child.pid] = child
    cluster.nginx = Process("nginx", child.pid, str(log), lb_port)
    cluster.address = f"127.0.0.1:{lb_port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if child.poll() is not None:
            raise ClusterError(f"nginx exited with {child.returncode}: see {log} and {run_dir / 'nginx-error.log'}")
        try:
            socket.create_connection(("127.0.0.1", lb_port), timeout=1).close()
            return cluster.nginx
        except OSError:
            if time.monotonic() > deadline:
                raise ClusterError(f"nginx did not listen on {cluster.address}: see {log}") from None
            time.sleep(0.05)


def up(
    run_dir: Path = DEFAULT_RUN_DIR,
    *,
    replicas: int = 2,
    env: Mapping[str, str] | None = None,
    redis_db: int = REDIS_DB,
    http: bool = False,
) -> Cluster:
    """Start Redis if needed, `replicas` gateways and nginx in front of them; returns the running cluster.

    `env` adds INTEGRATION_API_* settings for every replica. On any failure, what was started is stopped again.
    """
    run_dir = run_dir.resolve()
    if (run_dir / STATE_FILE).exists():
        raise ClusterError(f"a cluster already runs from {run_dir} (its {STATE_FILE}): stop it first")
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    ensure_redis()
    cluster = Cluster(str(run_dir), "", f"redis://127.0.0.1:6379/{redis_db}")
    try:
        for index in range(1, replicas + 1):
            start_replica(cluster, f"replica-{index}", env or {}, http=http)
        for replica in cluster.replicas:
            wait_serving(replica, cluster.children.get(replica.pid))
        start_nginx(cluster)
        cluster.save()
    except BaseException:
        stop_processes(cluster)
        raise
    return cluster


def _is_ours(pid: int, name: str) -> bool:
    """Whether `pid` still runs the program we started under it (and is not a zombie): never signal a reused PID."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    expected = b"nginx" if name == "nginx" else b"integration"
    return expected in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_exit(cluster: Cluster, process: Process, timeout_s: float) -> bool:
    """Wait for `process` to end (reaping it when it is our child); False if it still runs after `timeout_s`."""
    child = cluster.children.get(process.pid)
    if child is not None:
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        cluster.children.pop(process.pid, None)
        return True
    deadline = time.monotonic() + timeout_s
    while _is_ours(process.pid, process.name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def signal_process(cluster: Cluster, process: Process, signum: signal.Signals) -> None:
    child = cluster.children.get(process.pid)
    if child is not None and child.poll() is None:
        child.send_signal(signum)
    elif child is None and _is_ours(process.pid, process.name):
        os.kill(process.pid, signum)


def stop_processes(cluster: Cluster, grace_s: float = 25.0) -> None:
    """SIGTERM every process (replicas drain), SIGKILL whatever still runs after `grace_s`."""
    processes = [*cluster.replicas, *([cluster.nginx] if cluster.nginx else [])]
    for process in processes:
        signal_process(cluster, process, signal.SIGTERM)
    for process in processes:
        if not wait_exit(cluster, process, grace_s):
            signal_process(cluster, process, signal.SIGKILL)
            wait_exit(cluster, process, 5)


def down(run_dir: Path = DEFAULT_RUN_DIR, cluster: Cluster | None = None) -> None:
    """Stop the cluster started from `run_dir` (or `cluster`, with its children): exactly the PIDs it recorded."""
    run_dir = Path(cluster.run_dir) if cluster is not None else run_dir.resolve()
    if cluster is None:
        if not (run_dir / STATE_FILE).exists():
            return
        cluster = Cluster.load(run_dir)
    stop_processes(cluster)
    (run_dir / STATE_FILE).unlink(missing_ok=True)


def status(run_dir: Path = DEFAULT_RUN_DIR) -> str:
    if not (run_dir.resolve() / STATE_FILE).exists():
        return f"no cluster runs from {run_dir}"
    cluster = Cluster.load(run_dir.resolve())
    lines = [f"load balancer: {cluster.address} (nginx, HTTP/2 grpc_pass); redis: {cluster.redis_url}"]
    for process in [*cluster.replicas, *([cluster.nginx] if cluster.nginx else [])]:
        state = "running" if _is_ours(process.pid, process.name) else "stopped"
        where = f"127.0.0.1:{process.port}"
        lines.append(f"  {process.name:<10} pid {process.pid:<8} {where:<16} {state:<8} log {process.log}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--http", action="store_true", help="also serve HTTP on a free port per replica")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = up(args.run_dir, replicas=args.replicas, http=args.http)
            key = create_key(cluster, "make-cluster")
            print(status(args.run_dir))
            print(f"\nconnect to {cluster.address} with x-api-key: {key}\nstop it with `make cluster-stop`")
        elif args.command == "down":
            down(args.run_dir)
            print(f"stopped the cluster of {args.run_dir}")
        else:
            print(status(args.run_dir))
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
