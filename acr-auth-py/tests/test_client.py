"""AcrClient against the acr-fake-cloud binary: tokens, async, errors, the GIL and fork()."""
import asyncio
import datetime
import os
import socket
import threading
import time

import pytest

import acr_auth

INSTANCE = "cri-testinstance01"


@pytest.fixture()
def client(fake_cloud):
    creds = acr_auth.StaticCredentials("LTAItestkey", "test-secret")
    return acr_auth.AcrClient("cn-hangzhou", credentials=creds, endpoint=f"http://{fake_cloud}")


def test_enterprise_and_personal_tokens(client):
    ee = client.get_authorization_token(INSTANCE)
    assert ee.username == "temp_user_cr"
    assert len(ee.password) == 64
    assert ee.expires_at.tzinfo is not None
    left = ee.expires_at - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=58) < left <= datetime.timedelta(hours=1)
    pe = client.get_authorization_token()
    assert pe.username == "cr_temp_user"
    assert ee.password not in repr(ee) and "<redacted>" in repr(ee)


def test_list_instance_endpoints(client):
    eps = client.list_instance_endpoints(INSTANCE)
    domains = [d["domain"] for ep in eps for d in ep["domains"]]
    assert domains == [
        "acme-registry.cn-hangzhou.cr.aliyuncs.com",
        "registry.acme.example",
        "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
    ]
    assert eps[0]["domains"][1]["type"] == "USER"


def test_async_twins(client):
    async def main():
        ee, pe, eps = await asyncio.gather(
            client.get_authorization_token_async(INSTANCE),
            client.get_authorization_token_async(),
            client.list_instance_endpoints_async(INSTANCE),
        )
        return ee, pe, eps

    ee, pe, eps = asyncio.run(main())
    assert (ee.username, pe.username, len(eps)) == ("temp_user_cr", "cr_temp_user", 2)


def test_async_errors_are_raised_in_the_awaiting_task(fake_cloud):
    bad = acr_auth.AcrClient("cn-hangzhou", credentials=acr_auth.StaticCredentials("LTAInobody", "x"),
                             endpoint=f"http://{fake_cloud}")

    async def main():
        with pytest.raises(acr_auth.ApiError) as info:
            await bad.get_authorization_token_async(INSTANCE)
        return info.value

    e = asyncio.run(main())
    assert e.code == "InvalidAccessKeyId.NotFound" and e.status == 404


def test_api_error_attributes_and_no_secret(fake_cloud):
    client = acr_auth.AcrClient("cn-hangzhou", credentials=acr_auth.StaticCredentials("LTAItestkey", "not-the-secret-xyz"),
                                endpoint=f"http://{fake_cloud}")
    with pytest.raises(acr_auth.ApiError) as info:
        client.get_authorization_token(INSTANCE)
    e = info.value
    assert isinstance(e, acr_auth.AcrAuthError)
    assert (e.code, e.status, e.retryable, e.kind) == ("SignatureDoesNotMatch", 400, False, "api")
    assert e.request_id
    assert "not-the-secret-xyz" not in str(e) and "not-the-secret-xyz" not in repr(e)


def test_transport_error_is_retryable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = acr_auth.AcrClient("cn-hangzhou", credentials=acr_auth.StaticCredentials("a", "b"),
                                endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(acr_auth.TransportError) as info:
        client.get_authorization_token()
    assert info.value.retryable


def test_invalid_arguments_are_value_errors():
    with pytest.raises(acr_auth.InvalidArgumentError) as info:
        acr_auth.AcrClient("not a region", credentials=acr_auth.StaticCredentials("a", "b"))
    assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError):
        acr_auth.AcrClient("cn-hangzhou", credentials="LTAI...")


def test_retryable_faults_are_retried(client, cloud):
    before = cloud.calls("GetAuthorizationToken")
    cloud.fail_next(2, "ServiceUnavailable")
    assert client.get_authorization_token(INSTANCE).username == "temp_user_cr"
    assert cloud.calls("GetAuthorizationToken") == before + 3


def test_the_gil_is_released_while_rust_waits(client, cloud):
    cloud.fail_next(1, {"DelayMs": 1500})
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    started = time.monotonic()
    try:
        client.get_authorization_token()
    finally:
        stop.set()
        t.join()
    assert time.monotonic() - started >= 1.4, "the call waited on the slow endpoint"
    # While the call waited, the other thread ran: hundreds of ticks, not a handful.
    assert ticks > 200, ticks


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_calls_work_in_a_forked_child(client):
    client.get_authorization_token()  # the parent's runtime is running
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            token = client.get_authorization_token(INSTANCE)
            code = 0 if token.username == "temp_user_cr" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert client.get_authorization_token().username == "cr_temp_user", "the parent still works"
