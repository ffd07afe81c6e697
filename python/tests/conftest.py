"""Fixtures: the real broker and Rust demo worker (built by cargo) and Python workers, as
processes on ephemeral loopback ports; every process a test starts is killed (by its own
handle) when the test ends.

The Rust binaries come from $SWITCHBOARD_BIN_DIR, else the repository's target/debug; a
missing binary fails the test run (it is never skipped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from switchboard_rpc import Client

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN_DIR = Path(os.environ.get("SWITCHBOARD_BIN_DIR", REPO / "target" / "debug"))
WAIT_LIMIT = 20.0


def binary(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build the Rust programs first (cargo build --workspace --bins) "
                    f"or point SWITCHBOARD_BIN_DIR at them", pytrace=False)
    return str(path)


class Proc:
    """A process a test started."""

    def __init__(self, args: List[str], env: Optional[Dict[str, str]] = None,
                 stdout: int = subprocess.DEVNULL, cwd: Optional[str] = None) -> None:
        full_env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), full_env.get("PYTHONPATH")]))
        full_env.update(env or {})
        self.popen = subprocess.Popen(args, env=full_env, stdout=stdout, stderr=None, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def wait(self, timeout: float = WAIT_LIMIT) -> int:
        return self.popen.wait(timeout)


class Broker:
    """A broker process and the endpoints it bound."""

    def __init__(self, procs: List[Proc], *extra: str, frontend: str = "tcp://127.0.0.1:*",
                 backend: str = "tcp://127.0.0.1:*", env: Optional[Dict[str, str]] = None) -> None:
        self.proc = Proc([binary("broker"), "--frontend", frontend, "--backend", backend, *extra],
                         env=env, stdout=subprocess.PIPE)
        procs.append(self.proc)
        line: List[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.popen.stdout.readline().decode()))
        reader.start()
        reader.join(WAIT_LIMIT)
        if not line or "frontend=" not in line[0]:
            raise RuntimeError(f"the broker did not announce its endpoints: {line!r}")
        fields = dict(word.split("=", 1) for word in line[0].split() if "=" in word)
        self.frontend = fields["frontend"]
        self.backend = fields["backend"]

    def client(self, timeout: float = 10.0, **options) -> Client:
        return Client(self.frontend, timeout=timeout, **options)

    def wait_for_workers(self, function: str, count: int, **options) -> None:
        with self.client(2.0, **options) as client:
            until = time.monotonic() + WAIT_LIMIT
            while True:
                try:
                    listing = client.functions()
                except Exception:  # noqa: BLE001 - the broker may still be starting
                    listing = []
                if any(f["name"] == function and f["workers"] >= count for f in listing):
                    return
                if time.monotonic() > until:
                    raise AssertionError(f"{function!r} never had {count} workers: {listing}")
                time.sleep(0.02)


class Cluster:
    """Starts processes for one test and kills them all at its end."""

    def __init__(self) -> None:
        self.procs: List[Proc] = []

    def broker(self, *extra: str, **kwargs) -> Broker:
        return Broker(self.procs, *extra, **kwargs)

    def rust_worker(self, backend: str, name: str, *extra: str, env: Optional[Dict[str, str]] = None) -> Proc:
        proc = Proc([binary("worker"), "--broker", backend, "--name", name, *extra], env=env)
        self.procs.append(proc)
        return proc

    def python_worker(self, backend: str, name: str, *extra: str, target: str = "pyfuncs:registry",
                      env: Optional[Dict[str, str]] = None) -> Proc:
        proc = Proc([sys.executable, "-m", "switchboard_rpc", "worker", target, "--broker", backend,
                     "--name", name, "--log-level", "warning", *extra], env=env)
        self.procs.append(proc)
        return proc

    def run_rust_client(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([binary("client"), *args], capture_output=True, text=True, timeout=WAIT_LIMIT,
                              env=dict(os.environ, **(env or {})))

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()


@pytest.fixture
def cluster():
    started = Cluster()
    yield started
    started.stop()


@pytest.fixture
def demo(cluster):
    """A broker with one Rust demo worker."""
    broker = cluster.broker()
    cluster.rust_worker(broker.backend, "rust-1")
    broker.wait_for_workers("whoami", 1)
    return broker


@pytest.fixture
def client(demo):
    with demo.client() as connected:
        yield connected


SIGTERM = signal.SIGTERM
SIGKILL = signal.SIGKILL
