"""The project README's Python quick start works as written (its code blocks, run against a
real broker with the demo worker; only the endpoints change)."""

import re
import signal
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    text = README.read_text()
    section = text[text.index("\n## Python\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_client_and_worker_run_as_written(cluster, demo, tmp_path):
    client_code, worker_code, _raw = python_blocks()
    assert "Client(" in client_code and "Worker(" in worker_code
    client_code = client_code.replace("tcp://127.0.0.1:5555", demo.frontend)
    done = subprocess.run([sys.executable, "-c", client_code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["5", "hello, ada!", "9900"], done.stdout

    script = tmp_path / "pyworker.py"
    script.write_text(worker_code.replace("tcp://127.0.0.1:5556", demo.backend))
    from conftest import Proc

    worker = Proc([sys.executable, str(script)])
    cluster.procs.append(worker)
    demo.wait_for_workers("double", 1)
    answer = cluster.run_rust_client("--endpoint", demo.frontend, "call", "double", "21")
    assert answer.stdout.strip() == "42", answer.stderr
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
