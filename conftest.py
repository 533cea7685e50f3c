"""Shared pytest fixtures: the `acr-fake-cloud` binary as a subprocess, with its control API."""
import json
import os
import pathlib
import subprocess
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parent


def fake_cloud_binary() -> pathlib.Path:
    explicit = os.environ.get("ACR_FAKE_CLOUD_BIN")
    path = pathlib.Path(explicit) if explicit else ROOT / "target" / "debug" / "acr-fake-cloud"
    if not path.exists():
        pytest.fail(f"{path} not found: run `cargo build -p acr-auth-testkit` or scripts/test")
    return path


@pytest.fixture(scope="module")
def fake_cloud():
    """Starts the fake cloud with its sample configuration; yields its host:port."""
    proc = subprocess.Popen(
        [str(fake_cloud_binary())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ACR_FAKE_CLOUD_URL=http://"), line
        yield line.split("http://", 1)[1]
    finally:
        # Closing stdin tells the fake to stop.
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class FakeCloudControl:
    """The fake cloud's control API: fault injection and call counts."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.url = f"http://{host}"

    def fail_next(self, count: int, fault, action=None) -> None:
        body = json.dumps({"count": count, "fault": fault, "action": action}).encode()
        req = urllib.request.Request(f"{self.url}/_fake/faults", data=body, method="POST")
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200

    def calls(self, action: str) -> int:
        with urllib.request.urlopen(f"{self.url}/_fake/calls") as resp:
            return json.loads(resp.read()).get(action, 0)


@pytest.fixture(scope="module")
def cloud(fake_cloud):
    """The fake cloud with its control API."""
    return FakeCloudControl(fake_cloud)
