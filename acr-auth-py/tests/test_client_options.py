"""AcrClient options, instance id checks, Ctrl-C, pickling and LoginResolver, against the fake cloud."""
import copy
import datetime
import pickle
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import acr_auth

INSTANCE = "cri-testinstance01"


def client_of(fake_cloud, **options):
    creds = acr_auth.StaticCredentials("LTAItestkey", "test-secret")
    return acr_auth.AcrClient("cn-hangzhou", credentials=creds, endpoint=f"http://{fake_cloud}", **options)


@pytest.mark.parametrize("instance_id", ["", "cri-", "not an id", "registry.cn-hangzhou.aliyuncs.com", "cri-a b"])
def test_empty_or_malformed_instance_ids_raise_invalid_argument(fake_cloud, cloud, instance_id):
    client = client_of(fake_cloud)
    before = cloud.calls("GetAuthorizationToken")
    with pytest.raises(acr_auth.InvalidArgumentError) as info:
        client.get_authorization_token(instance_id)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "invalid_input"
    with pytest.raises(acr_auth.InvalidArgumentError):
        client.list_instance_endpoints(instance_id)
    assert cloud.calls("GetAuthorizationToken") == before, "nothing was sent"
    # None is still the Personal Edition.
    assert client.get_authorization_token(None).username == "cr_temp_user"


def test_max_attempts_and_backoff_options(fake_cloud, cloud):
    once = client_of(fake_cloud, max_attempts=1)
    before = cloud.calls("GetAuthorizationToken")
    cloud.fail_next(1, "ServiceUnavailable")
    with pytest.raises(acr_auth.ApiError) as info:
        once.get_authorization_token(INSTANCE)
    assert info.value.retryable and info.value.status == 503
    assert cloud.calls("GetAuthorizationToken") == before + 1, "no retry"

    patient = client_of(fake_cloud, max_attempts=3, initial_backoff=0, max_backoff=0)
    cloud.fail_next(2, "ServiceUnavailable")
    assert patient.get_authorization_token(INSTANCE).username == "temp_user_cr"
    assert cloud.calls("GetAuthorizationToken") == before + 4


def test_read_timeout_option(fake_cloud, cloud):
    client = client_of(fake_cloud, read_timeout=0.3, max_attempts=1)
    cloud.fail_next(1, {"DelayMs": 5000})
    with pytest.raises(acr_auth.TransportError) as info:
        client.get_authorization_token(INSTANCE)
    assert info.value.kind == "timeout" and info.value.retryable


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"connect_timeout": 0},
        {"connect_timeout": -1.0},
        {"read_timeout": float("nan")},
        {"read_timeout": float("inf")},
        {"initial_backoff": -0.5},
    ],
)
def test_invalid_options_raise_invalid_argument(options):
    with pytest.raises(acr_auth.InvalidArgumentError):
        acr_auth.AcrClient("cn-hangzhou", credentials=acr_auth.StaticCredentials("a", "b"), **options)
    with pytest.raises(acr_auth.InvalidArgumentError):
        acr_auth.LoginResolver(acr_auth.StaticCredentials("a", "b"), **options)


CHILD = textwrap.dedent(
    """
    import sys
    import acr_auth

    client = acr_auth.AcrClient(
        "cn-hangzhou",
        credentials=acr_auth.StaticCredentials("LTAIx", "secret"),
        endpoint=sys.argv[1],
        read_timeout=3600,
        max_attempts=1,
    )
    print("calling", flush=True)
    try:
        client.get_authorization_token("cri-abcdefghijklmnop")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    print("returned", flush=True)
    sys.exit(1)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGINT")
def test_ctrl_c_interrupts_a_blocking_call():
    # Accepts connections (the kernel does, from the backlog) and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(60)
        url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "calling"
            conn, _ = listener.accept()  # the child is inside the call, waiting for an answer
            with conn:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "interrupted" in out, (out, err)
    assert proc.returncode == 0, (out, err)


def test_tokens_pickle_and_copy_without_showing_the_password(fake_cloud):
    token = client_of(fake_cloud).get_authorization_token(INSTANCE)
    back = pickle.loads(pickle.dumps(token))
    assert isinstance(back, acr_auth.RegistryToken)
    assert back == token and hash(back) == hash(token)
    assert (back.username, back.password, back.expires_at) == (token.username, token.password, token.expires_at)
    assert copy.copy(token) == token and copy.deepcopy(token) == token
    for shown in (repr(token), str(token), repr(back), repr([token])):
        assert token.password not in shown and "<redacted>" in shown
    other = acr_auth.RegistryToken(token.username, "another-password", token.expires_at)
    assert other != token
    assert token != "not a token"


def test_tokens_from_parts():
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=datetime.timezone.utc)
    t = acr_auth.RegistryToken("u", "p", at)
    assert (t.username, t.password, t.expires_at) == ("u", "p", at)
    plus8 = datetime.timezone(datetime.timedelta(hours=8))
    assert acr_auth.RegistryToken("u", "p", at.astimezone(plus8)) == t
    with pytest.raises(TypeError):
        acr_auth.RegistryToken("u", "p", datetime.datetime(2030, 1, 1))  # naive


def resolver_of(fake_cloud, **kwargs):
    creds = acr_auth.StaticCredentials("LTAItestkey", "test-secret")
    return acr_auth.LoginResolver(creds, endpoint=f"http://{fake_cloud}", **kwargs)


def test_login_resolver_resolves_hosts_and_logs_in(fake_cloud):
    resolver = resolver_of(
        fake_cloud, overrides={"https://Registry.Acme.Example/v2/": {"instance_id": INSTANCE, "region": "cn-hangzhou"}}
    )
    assert resolver.resolve("registry.cn-hangzhou.aliyuncs.com") == {
        "host": "registry.cn-hangzhou.aliyuncs.com",
        "region": "cn-hangzhou",
        "instance_id": None,
    }
    # The instance named in the host is looked up by name.
    assert resolver.resolve("https://acme-registry.cn-hangzhou.cr.aliyuncs.com") == {
        "host": "acme-registry.cn-hangzhou.cr.aliyuncs.com",
        "region": "cn-hangzhou",
        "instance_id": INSTANCE,
    }
    assert resolver.resolve("registry.acme.example")["instance_id"] == INSTANCE
    assert resolver.login("registry.acme.example").username == "temp_user_cr"
    assert resolver.login("registry.cn-hangzhou.aliyuncs.com").username == "cr_temp_user"

    import asyncio

    async def main():
        return await asyncio.gather(
            resolver.login_async("acme-registry.cn-hangzhou.cr.aliyuncs.com"),
            resolver.resolve_async("registry.acme.example"),
        )

    token, resolved = asyncio.run(main())
    assert token.username == "temp_user_cr" and resolved["region"] == "cn-hangzhou"


def test_login_resolver_errors(fake_cloud):
    resolver = resolver_of(fake_cloud)
    with pytest.raises(acr_auth.CredentialsError) as info:
        resolver.resolve("docker.io")
    assert info.value.kind == "not_configured"
    with pytest.raises(acr_auth.InvalidArgumentError):
        resolver_of(fake_cloud, overrides={"registry.acme.example": {"instance_id": ""}})
    with pytest.raises(acr_auth.InvalidArgumentError):
        resolver_of(fake_cloud, overrides={"registry.acme.example": {"instance": INSTANCE}})


def test_typed_dicts_describe_what_is_returned(fake_cloud):
    eps = client_of(fake_cloud).list_instance_endpoints(INSTANCE)
    assert set(eps[0]) == set(acr_auth.InstanceEndpoint.__annotations__)
    assert set(eps[0]["domains"][0]) == set(acr_auth.InstanceDomain.__annotations__)
    config = acr_auth.HelperConfig.from_configmap(
        {"acr-registry-info": "- instanceId: cri-abc\n  regionId: cn-beijing\n",
         "webhook-configuration": "enable: true\n"}
    )
    assert set(config.registries[0]) == set(acr_auth.RegistryItem.__annotations__)
    assert set(config.webhook) == set(acr_auth.WebhookConfig.__annotations__)
    secret = acr_auth.desired_secret("ns", {"r.example": ("u", "p")})
    assert set(secret) == set(acr_auth.SecretManifest.__annotations__)
    assert set(secret["metadata"]) <= set(acr_auth.ObjectMeta.__annotations__)
    patch = acr_auth.service_account_patch({"metadata": {"name": "default", "resourceVersion": "1"}})
    for op in patch:
        assert set(op) <= set(acr_auth.JsonPatchOperation.__annotations__)
        assert {"op", "path"} <= set(op)
    with pytest.raises(acr_auth.ConfigError) as info:
        acr_auth.HelperConfig.from_configmap({"acr-registry-info": "- instanceId: nope\n"})
    assert set(info.value.errors[0]) == set(acr_auth.ConfigProblem.__annotations__)
