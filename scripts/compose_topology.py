"""Runs the docker-compose.yml topology as plain processes on loopback.

There is no Docker engine here, so this script (1) validates the compose file with the
engine-free `docker-compose config`, (2) starts a broker, four workers and the example
client as local processes with exactly the environment the compose file gives each service
(service names and bind-all addresses mapped to 127.0.0.1, ports mapped to free ones),
(3) runs the compose health checks, checks that calls succeed and are spread over all four
workers and that metrics are served, and (4) stops everything with SIGTERM, expecting
exit status 0 from each process within its stop_grace_period.

    python3 scripts/compose_topology.py [--bin-dir target/debug] [--workers 4]
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message):
    print(f"compose topology: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_config():
    result = subprocess.run(["docker-compose", "-f", os.path.join(ROOT, "docker-compose.yml"), "config"],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        fail(f"docker-compose config rejected the file:\n{result.stderr}")
    print("compose topology: docker-compose config: valid", flush=True)
    return yaml.safe_load(result.stdout)


def localize(env, ports):
    """Maps service names and bind-all addresses to loopback, and compose ports to free ones."""
    out = {}
    for key, value in (env or {}).items():
        out[key] = re.sub(
            r"(tcp://)?(\*|broker|0\.0\.0\.0|127\.0\.0\.1|localhost):(\d+)",
            lambda m: f"{m.group(1) or ''}127.0.0.1:{ports.setdefault(m.group(3), free_port())}",
            str(value))
    return out


def command_of(service, bin_dir):
    entry = [p.replace("/usr/local/bin", bin_dir) for p in service.get("entrypoint", [])]
    return entry + list(service.get("command", []) or [])


def health_command(service, bin_dir):
    test = service["healthcheck"]["test"]
    if test[0] == "CMD":
        return [p.replace("/usr/local/bin", bin_dir) for p in test[1:]], False
    # Compose turns "$$" into "$" when it creates the container.
    return test[1].replace("/usr/local/bin", bin_dir).replace("$$", "$"), True


def wait_healthy(name, service, env, bin_dir, limit=15):
    command, shell = health_command(service, bin_dir)
    until = time.monotonic() + limit
    while time.monotonic() < until:
        if subprocess.run(command, shell=shell, env=env, capture_output=True, timeout=10).returncode == 0:
            print(f"compose topology: {name}: healthy")
            return
        time.sleep(0.1)
    fail(f"{name} never passed its health check {command}")


def grace_seconds(service):
    text = str(service.get("stop_grace_period", "10s"))
    return float(text.rstrip("s"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "debug"))
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    config = compose_config()
    services = config["services"]
    ports = {}
    base = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
    processes = []
    try:
        broker_env = {**base, **localize(services["broker"].get("environment"), ports)}
        broker_env["SWITCHBOARD_LOG_FORMAT"] = broker_env.get("SWITCHBOARD_LOG_FORMAT", "text")
        broker = subprocess.Popen(command_of(services["broker"], bin_dir), env=broker_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(("broker", broker, services["broker"]))
        wait_healthy("broker", services["broker"], broker_env, bin_dir)

        worker_names = [f"worker-{i + 1}" for i in range(args.workers)]
        for name in worker_names:
            env = {**base, **localize(services["worker"].get("environment"), ports), "HOSTNAME": name}
            worker = subprocess.Popen(command_of(services["worker"], bin_dir), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append((name, worker, services["worker"]))
        for name in worker_names:
            env = {**base, **localize(services["worker"].get("environment"), ports), "HOSTNAME": name}
            wait_healthy(name, services["worker"], env, bin_dir)

        client_env = {**base, **localize(services["client"].get("environment"), ports)}
        example = subprocess.run(command_of(services["client"], bin_dir), env=client_env,
                                 capture_output=True, text=True, timeout=30)
        if example.returncode != 0 or example.stdout.strip() != "5":
            fail(f"the example client service printed {example.stdout!r} {example.stderr!r}")
        print(f"compose topology: client service: {' '.join(services['client']['command'])} -> {example.stdout.strip()}")

        client = [os.path.join(bin_dir, "client"), "--json"]
        served = {}
        for _ in range(40):
            out = subprocess.run(client + ["call", "whoami"], env=client_env, capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                fail(f"whoami failed: {out.stdout} {out.stderr}")
            name = json.loads(out.stdout)["result"]
            served[name] = served.get(name, 0) + 1
        print(f"compose topology: 40 calls served by {served}")
        if sorted(served) != sorted(worker_names):
            fail(f"calls were not spread over all {args.workers} workers: {served}")

        metrics = broker_env.get("SWITCHBOARD_METRICS")
        if metrics:
            text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
            if f"switchboard_workers {args.workers}" not in text:
                fail("metrics do not report the workers")
            print(f"compose topology: metrics at http://{metrics}/metrics report {args.workers} workers")
    finally:
        # Workers first, then the broker, as `docker compose down` would stop them.
        for name, process, service in processes[1:] + processes[:1]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    status = process.wait(timeout=grace_seconds(service))
                except subprocess.TimeoutExpired:
                    process.kill()
                    fail(f"{name} did not stop within its stop_grace_period")
                if status != 0:
                    fail(f"{name} exited with status {status} after SIGTERM")
    print(f"compose topology: all {len(processes)} processes stopped cleanly: ok")


if __name__ == "__main__":
    main()
