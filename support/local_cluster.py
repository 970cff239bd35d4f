"""Real Ray clusters on this machine for the cluster tests and benchmarks: ``ray start``
processes, every one in a network namespace of its own with only a loopback (so nothing can
leave the machine, and every address is 127.0.0.1), each worker node also in a mount
namespace of its own in which the driver's repository, dataset cache, ~/.cache and run
folders do not exist, and whose Python has the dependencies but not this project (its
editable install points into the hidden repository). Only the storage folder is seen by every
node, as NFS would be; an S3 server (tests/s3_server.py) can listen in the cluster's network
too.

Needs root, ``ip netns`` and ``unshare``; ``cluster_unavailable()`` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
PORT = 6390
ADDRESS = f"127.0.0.1:{PORT}"
# a lost node is noticed within about 3 s (default: 20-65 s)
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def cluster_unavailable() -> str | None:
    """Why this machine cannot run the cluster tests, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux: worker nodes run in their own network and mount namespaces"
    for tool in ("ip", "unshare", "mount", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2 / util-linux) to give each node its own namespaces"
    name = f"abprobe{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=20)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip() or made.returncode}"
        mounted = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "mount",
                "-t",
                "tmpfs",
                "tmpfs",
                "/mnt",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if mounted.returncode != 0:
            return f"cannot give a node its own mount namespace: {mounted.stderr.strip() or mounted.returncode}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    return None


@dataclass
class LocalCluster:
    """A head without CPUs for trials and worker nodes, started and stopped by a test."""

    root: Path  # the cluster's own folder: Ray temp dirs, the shared storage
    hidden: list[Path]  # what a worker node must not see
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    name: str = field(default_factory=lambda: f"abtest{os.getpid()}{secrets.token_hex(2)}")
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    head: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)  # every node's and driver's (a cloud's credentials)

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def environment(self, token: bool = True, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token} if token else {}
        return env | self.env | extra

    def _in_namespace(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def start(self, workers: int = 2, cpus_per_worker: int = 1) -> LocalCluster:
        self.storage.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, timeout=20)
        subprocess.run(self._in_namespace(["ip", "link", "set", "lo", "up"]), check=True, timeout=20)
        self.head = self._start(
            "head",
            [
                str(RAY),
                "start",
                "--head",
                f"--port={PORT}",
                "--num-cpus=0",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={self.root / 'ray-head'}",
                "--block",
            ],
            self.environment(**FAST_HEALTH_CHECKS),
        )
        self.wait_for_nodes(1)
        for index in range(1, workers + 1):
            self.start_worker(f"worker{index}", cpus_per_worker)
        self.wait_for_nodes(1 + workers)
        return self

    def start_worker(self, name: str, cpus: int) -> None:
        """A worker node in its own mount namespace: the hidden paths are empty folders there."""
        venv, stash = Path(sys.prefix), self.root / f"{name}-python"
        stash.mkdir(exist_ok=True)
        # the Python may live inside a hidden folder (a repository's .venv): keep it reachable
        hide = [f"mount --bind {venv} {stash}"]
        hide += [f"mount -t tmpfs tmpfs {path}" for path in outermost(self.hidden) if path.is_dir()]
        hide += [f"mkdir -p {venv}", f"mount --bind {stash} {venv}", "cd /"]
        start = (
            f"{RAY} start --address={ADDRESS} --num-cpus={cpus} --disable-usage-stats "
            f"--temp-dir={self.root / ('ray-' + name)} --block"
        )
        script = " && ".join([*hide, f"exec {start}"])
        command = ["unshare", "-m", "--propagation", "private", "bash", "-c", script]
        self.workers[name] = self._start(name, command, self.environment())

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        return subprocess.Popen(
            self._in_namespace(command), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def nodes_alive(self) -> int:
        code = (
            "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
        )
        done = subprocess.run(
            self._in_namespace([sys.executable, "-c", code]),
            env=self.environment(RAY_ADDRESS=ADDRESS),
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0

    def wait_for_nodes(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes_alive() == count:
                return
            ended = [name for name, process in self.workers.items() if process.poll() is not None]
            if self.head is not None and self.head.poll() is not None:
                ended.append("head")
            if ended:
                raise RuntimeError(f"{', '.join(ended)} ended before the cluster was up: {self.logs()}")
            time.sleep(1.0)
        raise TimeoutError(f"the cluster did not reach {count} alive node(s) in {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text()[-800:]}" for p in sorted(self.root.glob("*.log")))

    def run(self, *args: str, token: bool = True, cwd: Path, extra: dict[str, str] | None = None) -> subprocess.Popen:
        """``python -m bench.run ARGS`` as a driver inside the cluster's network."""
        env = self.environment(token=token) | {"PYTHONUNBUFFERED": "1"} | (extra or {})
        command = self._in_namespace([sys.executable, "-m", "bench.run", *args])
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def python_on_worker(self, name: str, code: str) -> str:
        """What ``code`` prints when run by the Python of worker node ``name``, in its namespaces."""
        command = ["nsenter", "-t", str(self.workers[name].pid), "-m", "-n", "--wd=/", sys.executable, "-c", code]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=self.environment())
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def worker_running(self, marker: str) -> str | None:
        """The worker node one of whose processes has ``marker`` in its command line."""
        for name, process in self.workers.items():
            for pid in node_processes(process.pid):
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                        return name
        return None

    def kill_worker(self, name: str) -> None:
        """SIGKILL every process of the worker node, as a lost machine would end them: its ``ray
        start`` process group (raylet, object store, agents) and the trial processes Ray starts
        in groups of their own; all share the node's mount namespace."""
        members = node_processes(self.workers[name].pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.workers[name].pid, signal.SIGKILL)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.workers[name].wait(timeout=30)

    def restart_lost_workers(self, cpus: int = 1) -> None:
        """Start again every worker node that has ended, and wait until all are alive."""
        for name, process in list(self.workers.items()):
            if process.poll() is not None:
                self.start_worker(name, cpus)
        self.wait_for_nodes(1 + len(self.workers))

    def stop(self) -> None:
        """Every process in the cluster's network namespace killed, then the namespace removed."""
        listed = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=20)
        for pid in map(int, listed.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in [self.head, *self.workers.values()]:
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)


def outermost(paths: list[Path]) -> list[Path]:
    """``paths`` without those inside another of them (once the outer one is hidden, an inner
    one has no mount point left: a dataset cache inside the repository, as in CI)."""
    resolved = sorted({path.resolve() for path in paths}, key=lambda path: len(path.parts))
    kept: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def node_processes(pid: int) -> list[int]:
    """The processes in the mount namespace of ``pid``: one worker node's."""
    namespace = os.readlink(f"/proc/{pid}/ns/mnt")
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    members.append(int(entry.name))
    return members
