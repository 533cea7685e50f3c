"""TLS as users configure it: a private CA named by SSL_CERT_FILE is trusted, and without it the
endpoint is refused with an error naming the certificate problem. The client runs in a fresh
interpreter so that its environment is its own."""
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import fake_cloud_binary

SCRIPT = """
import sys, acr_auth
client = acr_auth.AcrClient("cn-hangzhou", endpoint=sys.argv[1],
                            credentials=acr_auth.StaticCredentials("LTAItestkey", "test-secret"))
try:
    print(client.get_authorization_token("cri-testinstance01").username)
except acr_auth.AcrAuthError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def https_cloud(tmp_path_factory):
    """The fake cloud behind HTTPS with a private CA; yields (https URL, CA file)."""
    ca = tmp_path_factory.mktemp("tls") / "ca.pem"
    env = dict(os.environ, ACR_FAKE_CLOUD_TLS_CA_FILE=str(ca))
    proc = subprocess.Popen([str(fake_cloud_binary())], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().startswith("ACR_FAKE_CLOUD_URL=http://")
        line = proc.stdout.readline().strip()
        assert line.startswith("ACR_FAKE_CLOUD_HTTPS_URL=https://"), line
        yield line.split("=", 1)[1], ca
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(url: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
    return subprocess.run([sys.executable, "-c", SCRIPT, url], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_ssl_cert_file_makes_a_private_ca_trusted(https_cloud):
    url, ca = https_cloud
    out = run(url, SSL_CERT_FILE=str(ca))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "temp_user_cr"


def test_without_it_the_certificate_is_refused_by_name(https_cloud):
    url, _ = https_cloud
    out = run(url)
    assert out.returncode == 3, out.stderr
    assert "invalid peer certificate: UnknownIssuer" in out.stderr
    assert "SSL_CERT_FILE" in out.stderr
    assert "test-secret" not in out.stderr
