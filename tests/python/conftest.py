"""Starts the real gateway binary in --demo mode (built-in simulated upstream) for SDK tests."""
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "release", "qwen-gateway")
API_KEY = "sk-sdk-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(extra_env=None):
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    port, sim_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SERVER_PORT": str(port),
        "LISTEN_ADDRESS": "127.0.0.1",
        "DEMO_SIM_PORT": str(sim_port),
        "API_KEY": API_KEY,
        "THREADS": "2",
        "METRICS_LISTEN": "off",
        **(extra_env or {}),
    }
    log = open(os.path.join(TARGET, f"sdk-gateway-{port}.log"), "w")
    proc = subprocess.Popen([BIN, "--demo"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/health", timeout=1).read()
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("gateway exited early")
            time.sleep(0.1)
    else:
        raise RuntimeError("gateway did not start")
    return proc, {"base_url": base + "/v1", "api_key": API_KEY, "sim": f"http://127.0.0.1:{sim_port}"}


def stop(proc):
    # SIGINT is Pingora's fast exit; SIGTERM would wait out the graceful-shutdown period.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def gateway():
    proc, info = start()
    yield info
    stop(proc)


@pytest.fixture
def fresh_gateway():
    """For tests whose upstream faults make the demo's single account rest (e.g. a 429)."""
    proc, info = start()
    yield info
    stop(proc)


@pytest.fixture
def accepted_gateway():
    """Streams commit their 200 when the upstream accepts (STREAM_COMMIT=accepted)."""
    proc, info = start({"STREAM_COMMIT": "accepted", "SSE_KEEPALIVE_SECS": "1"})
    yield info
    stop(proc)
