"""Fixtures: the `acr-fake-cloud` binary as a subprocess."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


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
