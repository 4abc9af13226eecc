"""`make lab ARGS=--no-browser` serves JupyterLab on the course (the README's first command)."""
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_jupyterlab(tmp_path):
    port = free_port()
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token=course-test")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(["make", "lab", f"ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, body = time.time() + 90, ""
        while time.time() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/lab/tree/lectures?token=course-test"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    body = resp.read().decode()
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        assert "JupyterLab" in body, "JupyterLab did not answer on its port within 90 s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token=course-test",
                                    timeout=5) as resp:
            assert b"ssl-vision" in resp.read(), "the course kernel is not registered"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
