"""Validates the Kubernetes manifests in deploy/kubernetes offline.

    python3 scripts/k8s_validate.py [--kubernetes-version 1.30.0]

Core objects (Services, Deployments, the HPA) against the official Kubernetes schemas, strictly
(unknown fields are errors), with `kubernetes-validate` from PyPI (installed in its own virtual
environment, target/k8s-venv, on first use); the KEDA ScaledObject against a JSON schema of the
fields KEDA's ScaledObject has that these manifests use (KEDA's CRD is not bundled there).
Then the promises the manifests make to each other: each Deployment's grace period is above its
process's shutdown grace, every container runs as uid 10001 with requests and probes, every
Service selects pods that some Deployment makes, every Secret item mounted is one README.md
tells how to create, and the autoscalers target the worker Deployment.
Exit 1 with every problem listed.
"""

import argparse
import glob
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MANIFESTS = os.path.join(ROOT, "deploy", "kubernetes")
VENV = os.path.join(ROOT, "target", "k8s-venv")
SECRET_KEYS = {"broker.key", "broker.pub", "worker.key", "health.key", "clients.txt", "workers.txt"}

SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                   "apiVersion": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                        "properties": {
                            "type": {"const": "prometheus"},
                            "metadata": {
                                "type": "object", "required": ["serverAddress", "query", "threshold"],
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def tool():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(os.path.join(VENV, "bin", "kubernetes-validate")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "kubernetes-validate", "pyyaml"], check=True)
    return python


def checks(documents):
    """The promises between manifests; returns the problems."""
    problems = []
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        if not any(selector.items() <= lab.items() for lab in labels):
            problems.append(f"Service {service['metadata']['name']} selects no Deployment's pods")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        if pod["securityContext"].get("runAsUser") != 10001 or not pod["securityContext"].get("runAsNonRoot"):
            problems.append(f"{name}: pods must run as uid 10001, non-root")
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            grace_ms = int(env.get("SWITCHBOARD_SHUTDOWN_GRACE_MS") or 10000)
            if pod.get("terminationGracePeriodSeconds", 30) * 1000 <= grace_ms:
                problems.append(f"{name}: terminationGracePeriodSeconds is not above the {grace_ms} ms shutdown grace")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{name}/{container['name']}: no {probe}")
            if not container.get("resources", {}).get("requests"):
                problems.append(f"{name}/{container['name']}: no resource requests")
            mounted = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for key, value in env.items():
                if value and value.startswith("/etc/switchboard/keys/"):
                    if os.path.basename(value) not in {item["path"] for v in pod.get("volumes", [])
                                                       for item in v.get("secret", {}).get("items", [])}:
                        problems.append(f"{name}: {key}={value} is not mounted from the Secret")
            if "/etc/switchboard/keys" not in mounted:
                problems.append(f"{name}/{container['name']}: the keys volume is not mounted")
        for volume in pod.get("volumes", []):
            for item in volume.get("secret", {}).get("items", []):
                if item["key"] not in SECRET_KEYS:
                    problems.append(f"{name}: Secret item {item['key']} is not one README.md makes")
    for scaler in (d for d in documents if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")):
        if scaler["spec"]["scaleTargetRef"]["name"] != "switchboard-worker":
            problems.append(f"{scaler['kind']} does not scale the worker Deployment")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", default="1.30.0")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        python = tool()
        return subprocess.run([python, os.path.abspath(__file__), "--inside", "--kubernetes-version",
                               args.kubernetes_version]).returncode
    import jsonschema
    import yaml
    files = sorted(glob.glob(os.path.join(MANIFESTS, "*.yaml")))
    documents, core, problems = [], [], []
    for path in files:
        with open(path) as f:
            for document in yaml.safe_load_all(f):
                if document:
                    documents.append(document)
                    if document["apiVersion"].startswith("keda.sh/"):
                        try:
                            jsonschema.validate(document, SCALED_OBJECT)
                        except jsonschema.ValidationError as error:
                            problems.append(f"{os.path.basename(path)}: {error.message}")
                    elif path not in core:
                        core.append(path)
    validator = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    done = subprocess.run([validator, "--strict", "--quiet", "-k", args.kubernetes_version, *core],
                          capture_output=True, text=True)
    if done.returncode != 0:
        problems.append(done.stdout + done.stderr)
    problems += checks(documents)
    if problems:
        print("kubernetes manifests: " + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"kubernetes manifests: {len(documents)} objects in {len(files)} files valid "
          f"(Kubernetes {args.kubernetes_version} schemas, strict; KEDA ScaledObject schema)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
