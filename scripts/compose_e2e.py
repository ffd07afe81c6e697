"""docker compose for real: the stack of docker-compose.yml on a Docker engine, under load.

    python3 scripts/compose_e2e.py [--bin-dir target/release]

Builds the runtime image the way a machine without a registry can: a Debian base from
`scripts/docker_base.sh` (debootstrap + docker import), the Dockerfile's `runtime-base` stage
on it, then the host-built binaries (stripped) copied in. Brings the compose stack up as its
own project with its client port on a free loopback port, and checks, from the host, with the
Rust `client` and `bench`:

1. `up --scale worker=3`: three workers register and every container turns healthy;
2. a call from the host through the published port is answered;
3. a worker container killed (SIGKILL) under load: every call of a retry-safe function
   succeeds (the broker re-dispatches);
4. a worker stopped gracefully (SIGTERM) under load: no call fails, the container exits 0;
5. the broker restarted: the workers register again without being restarted themselves;
6. scale down to 2 and up to 4 under load: no call fails;
7. `stop` with calls in flight: every call gets exactly one outcome, every container exits 0;
8. CURVE: docker-compose.curve.yml as its header says to use it;
9. the broker tier (docker-compose.tier.yml): three brokers behind one name, every broker lists
   every worker, calls from the host over the three ports and from the example client through
   the name, then a rolling restart of the three brokers under load: no call fails.

Fails loudly (exit 1, the step named) on the first broken promise; always takes the stack down
and kills only what it started.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BASE_IMAGE = "switchboard-debian:bookworm"
RUNTIME_BASE = "switchboard-runtime-base:e2e"
IMAGE = "switchboard:e2e"


def run(*args, check=True, capture=True, env=None, timeout=600):
    done = subprocess.run(args, capture_output=capture, text=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise SystemExit(f"compose e2e: `{' '.join(args)}` failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")
    return done


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_image(bin_dir):
    run(os.path.join(ROOT, "scripts", "docker_base.sh"), BASE_IMAGE)
    run("docker", "build", "-q", "--target", "runtime-base", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "-t", RUNTIME_BASE, ROOT)
    with tempfile.TemporaryDirectory() as context:
        for name in ("broker", "worker", "client"):
            target = os.path.join(context, name)
            shutil.copy2(os.path.join(bin_dir, name), target)
            run("strip", target)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(f"FROM {RUNTIME_BASE}\nCOPY broker worker client /usr/local/bin/\n")
        run("docker", "build", "-q", "-t", IMAGE, context)


class Stack:
    """The compose project this run owns."""

    def __init__(self, bin_dir, files=(os.path.join(ROOT, "docker-compose.yml"),), name="plain",
                 client_args=()):
        self.bin_dir = bin_dir
        self.files = files
        self.client_args = list(client_args)
        self.project = f"sbe2e{name}{os.getpid()}"
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.env = dict(os.environ, SWITCHBOARD_IMAGE=IMAGE, SWITCHBOARD_CLIENT_PORT=str(self.port),
                        SWITCHBOARD_METRICS_PORT=str(free_port()))

    def compose(self, *args, check=True, timeout=300):
        files = [arg for path in self.files for arg in ("-f", path)]
        return run("docker-compose", *files, "-p", self.project, *args, check=check, env=self.env,
                   timeout=timeout)

    def containers(self, service):
        out = self.compose("ps", "-q", service).stdout.split()
        return [c for c in out if c]

    def inspect(self, container, template):
        return run("docker", "inspect", "-f", template, container).stdout.strip()

    def client(self, *args, check=True):
        return run(os.path.join(self.bin_dir, "client"), "--endpoint", self.endpoint, "--timeout-ms", "5000",
                   *self.client_args, *args, check=check)

    def workers(self):
        done = self.client("--json", "workers", check=False)
        if done.returncode != 0:
            return []
        return json.loads(done.stdout)["result"]

    def wait_for_workers(self, count, what, limit=90):
        """Waits until the broker lists exactly the `count` running worker containers (each
        announces its container's host name: the first 12 digits of its id)."""
        until = time.monotonic() + limit
        while time.monotonic() < until:
            running = {c[:12] for c in self.containers("worker")
                       if self.inspect(c, "{{.State.Running}}") == "true"}
            listed = {w["name"] for w in self.workers() if not w.get("draining")}
            if len(running) == count and listed == running:
                return listed
            time.sleep(0.5)
        raise SystemExit(f"compose e2e: {what}: {count} workers never registered "
                         f"(broker lists {self.workers()})")

    def wait_healthy(self, limit=120):
        until = time.monotonic() + limit
        while time.monotonic() < until:
            ids = self.containers("broker") + self.containers("worker")
            states = {c: self.inspect(c, "{{.State.Health.Status}}") for c in ids}
            if ids and all(s == "healthy" for s in states.values()):
                return
            time.sleep(1)
        raise SystemExit(f"compose e2e: containers never all healthy: {states}")

    def load(self, *args, timeout_ms=20000):
        """Starts a bench against the stack; returns the process (read with finish)."""
        return subprocess.Popen([os.path.join(self.bin_dir, "bench"), "--endpoint", self.endpoint, "--json",
                                 "--timeout-ms", str(timeout_ms), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def finish(bench, calls, what):
        """The bench's error counts, once it ends; `calls` (None for a timed run) is how
        many outcomes it must report."""
        out, err = bench.communicate(timeout=300)
        if bench.returncode != 0:
            raise SystemExit(f"compose e2e: {what}: bench failed: {err}")
        report = json.loads(out)["broker"]
        if calls is not None and report["calls"] != calls:
            raise SystemExit(f"compose e2e: {what}: {report['calls']} outcomes for {calls} calls")
        return report["errors"]


def step(number, text):
    print(f"compose e2e {number}: {text}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    started = time.monotonic()
    build_image(bin_dir)
    stack = Stack(bin_dir)
    try:
        step(1, "up --scale worker=3")
        stack.compose("up", "-d", "--no-build", "--scale", "worker=3")
        stack.wait_for_workers(3, "after up")
        stack.wait_healthy()

        step(2, "a call from the host through the published port")
        answer = stack.client("call", "add", "2", "3").stdout.strip()
        if answer != "5":
            raise SystemExit(f"compose e2e: add(2, 3) answered {answer!r}")

        step(3, "kill -9 one worker's process under load (retry-safe calls); its container restarts")
        bench = stack.load("--function", "lookup", "--args", "[7]", "--calls", "3000", "--in-flight", "20")
        time.sleep(0.5)
        victim = stack.containers("worker")[0]
        # The worker process itself, from the host, as a crash would (`docker kill` would count
        # as a deliberate stop, and the restart policy would leave the container down).
        run("kill", "-9", stack.inspect(victim, "{{.State.Pid}}"))
        errors = stack.finish(bench, 3000, "worker killed")
        if errors:
            raise SystemExit(f"compose e2e: retry-safe calls failed when a worker was killed: {errors}")

        step(4, "docker stop (SIGTERM) one worker under load")
        stack.wait_for_workers(3, "after the crash (restart: unless-stopped)")
        bench = stack.load("--function", "sleep_ms", "--args", "[20]", "--calls", "600", "--in-flight", "12")
        time.sleep(0.5)
        leaving = stack.containers("worker")[1]
        run("docker", "stop", leaving, timeout=60)
        errors = stack.finish(bench, 600, "worker stopped")
        code = stack.inspect(leaving, "{{.State.ExitCode}}")
        if errors or code != "0":
            raise SystemExit(f"compose e2e: graceful worker stop: errors {errors}, exit code {code}")
        run("docker", "start", leaving)

        step(5, "restart the broker: workers register again, without restarting")
        stack.wait_for_workers(3, "before the broker restart")
        worker_ids = stack.containers("worker")
        restarts = {c: stack.inspect(c, "{{.RestartCount}}") for c in worker_ids}
        stack.compose("restart", "broker")
        stack.wait_for_workers(3, "after the broker restart")
        after = {c: stack.inspect(c, "{{.RestartCount}}") for c in worker_ids}
        running = {c: stack.inspect(c, "{{.State.Running}}") for c in worker_ids}
        if after != restarts or set(running.values()) != {"true"}:
            raise SystemExit(f"compose e2e: workers restarted with the broker: {restarts} -> {after}, {running}")

        step(6, "scale down to 2 and up to 4 under load")
        bench = stack.load("--function", "sleep_ms", "--args", "[10]", "--calls", "1500", "--in-flight", "12")
        time.sleep(0.3)
        stack.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=2")
        stack.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=4")
        errors = stack.finish(bench, 1500, "scaling")
        if errors:
            raise SystemExit(f"compose e2e: calls failed while scaling: {errors}")
        stack.wait_for_workers(4, "after scaling up")

        step(7, "stop the stack with calls in flight")
        bench = stack.load("--function", "sleep_ms", "--args", "[200]", "--calls", "400", "--in-flight", "16",
                           timeout_ms=5000)
        time.sleep(1.0)
        everything = stack.containers("broker") + stack.containers("worker")
        stack.compose("stop", timeout=120)
        errors = stack.finish(bench, 400, "stop")
        codes = {c[:12]: stack.inspect(c, "{{.State.ExitCode}}") for c in everything}
        if set(codes.values()) != {"0"}:
            raise SystemExit(f"compose e2e: a container did not exit 0 on stop: {codes}")
        print(f"compose e2e: stop with calls in flight: 400 calls, 400 outcomes, errors {errors or 'none'}; "
              f"{len(codes)} containers exited 0")
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False, timeout=180)
    curve(bin_dir)
    tier(bin_dir)
    print(f"compose e2e: ok in {time.monotonic() - started:.0f} s")


def curve(bin_dir):
    """Step 8: docker-compose.curve.yml as its header says to use it."""
    step(8, "CURVE: keys from scripts/compose_keys.sh, the override file, calls with and without a key")
    with tempfile.TemporaryDirectory() as project:
        for name in ("docker-compose.yml", "docker-compose.curve.yml"):
            shutil.copy2(os.path.join(ROOT, name), project)
        keys = os.path.join(project, "keys")
        run(os.path.join(ROOT, "scripts", "compose_keys.sh"), keys, IMAGE)
        files = tuple(os.path.join(project, name) for name in ("docker-compose.yml", "docker-compose.curve.yml"))
        stack = Stack(bin_dir, files, name="curve",
                      client_args=["--curve-server-key-file", os.path.join(keys, "broker.pub"),
                                   "--curve-key-file", os.path.join(keys, "client.key")])
        try:
            stack.compose("up", "-d", "--no-build", "--scale", "worker=2")
            stack.wait_for_workers(2, "with CURVE")
            stack.wait_healthy()  # the health checks use their own key
            restarts = {c[:12]: stack.inspect(c, "{{.RestartCount}}") for c in stack.containers("broker")}
            if set(restarts.values()) != {"0"}:
                raise SystemExit(f"compose e2e: the CURVE broker restarted: {restarts}")
            answer = stack.client("call", "add", "2", "3").stdout.strip()
            if answer != "5":
                raise SystemExit(f"compose e2e: add(2, 3) over CURVE answered {answer!r}")
            plain = run(os.path.join(bin_dir, "client"), "--endpoint", stack.endpoint, "--timeout-ms", "1000",
                        "call", "add", "2", "3", check=False)
            if plain.returncode == 0:
                raise SystemExit("compose e2e: a client without a key got through the CURVE broker")
            example = stack.compose("run", "--rm", "client", "call", "add", "2", "3").stdout.strip()
            if not example.endswith("5"):
                raise SystemExit(f"compose e2e: the example client over CURVE printed {example!r}")
        finally:
            stack.compose("down", "-v", "--remove-orphans", check=False, timeout=180)
            # The key files belong to uid 10001 now; the temporary folder is ours to remove.
            run("docker", "run", "--rm", "--user", "0:0", "--entrypoint", "/bin/sh", "-v", f"{keys}:/keys", IMAGE,
                "-c", "rm -f /keys/*", check=False)


def tier(bin_dir):
    """Step 9: docker-compose.tier.yml as its header says to use it."""
    step(9, "the broker tier: three brokers behind one name, a rolling restart under load")
    stack = Stack(bin_dir, (os.path.join(ROOT, "docker-compose.tier.yml"),), name="tier")
    ports = [free_port() for _ in range(3)]
    for number, port in enumerate(ports, 1):
        stack.env[f"SWITCHBOARD_CLIENT_PORT_{number}"] = str(port)
        stack.env[f"SWITCHBOARD_METRICS_PORT_{number}"] = str(free_port())
    endpoints = [f"tcp://127.0.0.1:{port}" for port in ports]
    every = ",".join(endpoints)

    def wait_everywhere(what):
        for endpoint in endpoints:
            stack.endpoint = endpoint
            stack.wait_for_workers(3, f"{what}, at {endpoint}")
        stack.endpoint = every

    try:
        stack.compose("up", "-d", "--no-build", "--scale", "worker=3")
        wait_everywhere("after up (each worker finds every broker through the name)")
        names = {w["name"] for w in stack.workers()}
        answer = stack.client("call", "add", "2", "3").stdout.strip()
        if answer != "5":
            raise SystemExit(f"compose e2e: add(2, 3) over the tier answered {answer!r}")
        example = stack.compose("run", "--rm", "client", "call", "add", "2", "3").stdout.strip()
        if not example.endswith("5"):
            raise SystemExit(f"compose e2e: the example client through the name printed {example!r}")
        load_seconds = 60
        bench = stack.load("--via", "library", "--function", "sleep_ms", "--args", "[5]", "--in-flight", "16",
                           "--duration-s", str(load_seconds), timeout_ms=10000)
        began = time.monotonic()
        time.sleep(1.0)
        for name in ("broker-1", "broker-2", "broker-3"):
            stack.compose("restart", name, timeout=120)
            wait_everywhere(f"after restarting {name}")
        took = time.monotonic() - began
        if took > load_seconds - 1:
            raise SystemExit(f"compose e2e: the rolling restart took {took:.0f} s, longer than the load")
        errors = stack.finish(bench, None, "rolling restart")
        if errors:
            raise SystemExit(f"compose e2e: calls failed in the rolling restart of the brokers: {errors}")
        after = {w["name"] for w in stack.workers()}
        if after != names:
            raise SystemExit(f"compose e2e: worker names changed in the rolling restart: {names} -> {after}")
        print(f"compose e2e: tier: rolling restart of 3 brokers in {took:.0f} s under load, no call failed")
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False, timeout=180)


if __name__ == "__main__":
    sys.exit(main())
