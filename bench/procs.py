"""The processes under test: start one, wait until it answers, read its CPU time and memory, stop it by PID.

CPU time and RSS come from /proc (psutil is used when installed): utime + stime of the process and of every
descendant (a server that forks workers is measured whole); RSS is VmRSS of the process itself. The machine's
busy and stolen seconds come from /proc/stat, to tell other work on the machine and a noisy VM host apart.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

psutil: Any
try:
    psutil = importlib.import_module("psutil")
except ImportError:  # /proc is enough on Linux
    psutil = None

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants (0 when it is gone)."""
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            total = 0.0
            for member in [process, *process.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
            return total
        except psutil.Error:
            return 0.0
    return sum(_proc_cpu(member) for member in _tree(pid))


def _machine_ticks() -> list[int]:
    """The `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ... (clock ticks, all CPUs)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return []
    return fields + [0] * (8 - len(fields))


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), to see what else was running.

    Steal is left out: it is time the hypervisor gave to other guests, not work done here (see `steal_seconds`).
    """
    fields = _machine_ticks()
    if not fields:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _TICKS


def steal_seconds() -> float:
    """CPU seconds stolen from this machine (all CPUs): time its virtual CPUs were ready to run while the
    hypervisor ran another guest (field 8 of /proc/stat's `cpu` line; 0 on bare metal)."""
    fields = _machine_ticks()
    return fields[7] / _TICKS if fields else 0.0


def rss_kb(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` alone (every thread, no descendant; 0 when it is gone): one read of
    /proc/<pid>/stat, cheap enough to take between every few requests (`cpu_seconds` scans the process table)."""
    return _proc_cpu(pid)


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def _tree(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


@dataclass
class ServerProcess:
    """A started server: its name, process and port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM this process (and only it), then SIGKILL it if it has not exited within the grace."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_server(
    name: str,
    argv: Sequence[str],
    port: int,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready: Callable[[int], bool] | None = None,
    timeout_s: float = 30.0,
) -> ServerProcess:
    """Start `argv`, logging to `log_dir/<name>.log`, and wait until `ready(port)` (default: the port accepts)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=_ROOT
        )
    server = ServerProcess(name, process, port, log)
    check = ready or port_accepts
    deadline = time.monotonic() + timeout_s
    while not check(port):
        server.check_alive()
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} not ready on port {port} within {timeout_s:.0f} s; see {log}")
        time.sleep(0.1)
    return server


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(path: str) -> Callable[[int], bool]:
    """A readiness check: GET http://127.0.0.1:<port><path> answers 200."""

    def check(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


_ROOT = Path(__file__).resolve().parent.parent
