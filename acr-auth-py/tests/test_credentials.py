"""Credentials providers against the acr-fake-cloud binary, with the environment controlled."""
import asyncio
import json
import os

import pytest

import acr_auth

ROLE = "acs:ram::1234567890:role/acr-puller"


@pytest.fixture()
def isolated(monkeypatch, tmp_path, fake_cloud):
    """An empty credentials environment pointing STS and metadata at the fake."""
    for var in [v for v in os.environ if v.startswith("ALIBABA_CLOUD_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ACR_AUTH_STS_ENDPOINT", f"http://{fake_cloud}")
    monkeypatch.setenv("ACR_AUTH_METADATA_ENDPOINT", f"http://{fake_cloud}")
    return tmp_path


def test_static_credentials_repr_hides_secrets():
    c = acr_auth.StaticCredentials("LTAIid", "super-secret", "CAIS-token").get()
    assert (c.access_key_id, c.access_key_secret, c.security_token) == ("LTAIid", "super-secret", "CAIS-token")
    assert c.expiration is None
    assert "super-secret" not in repr(c) and "CAIS-token" not in repr(c)


def test_env_credentials_read_at_every_call(isolated, monkeypatch):
    provider = acr_auth.EnvCredentials()
    with pytest.raises(acr_auth.CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        provider.get()
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret")
    assert provider.get().access_key_id == "LTAIenv"


def test_assume_role_against_the_fake(isolated, fake_cloud):
    source = acr_auth.StaticCredentials("LTAItestkey", "test-secret")
    provider = acr_auth.AssumeRoleCredentials(source, ROLE, session_name="py-test", duration_seconds=900)
    c = provider.get()
    assert c.access_key_id.startswith("STS.") and c.security_token and c.expiration is not None
    assert provider.get().access_key_id == c.access_key_id, "cached"
    assert asyncio.run(provider.get_async()).access_key_id == c.access_key_id
    client = acr_auth.AcrClient("cn-hangzhou", credentials=provider, endpoint=f"http://{fake_cloud}")
    assert client.get_authorization_token().username == "cr_temp_user"
    with pytest.raises(acr_auth.InvalidArgumentError, match="between 900 and 43200"):
        acr_auth.AssumeRoleCredentials(source, ROLE, duration_seconds=60)


def test_oidc_from_environment(isolated, monkeypatch):
    token_file = isolated / "token"
    token_file.write_text("eyJ.test-oidc-token.sig")
    monkeypatch.setenv("ALIBABA_CLOUD_ROLE_ARN", ROLE)
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1234567890:oidc-provider/ack-rrsa-test")
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_TOKEN_FILE", str(token_file))
    assert acr_auth.OidcCredentials().get().access_key_id.startswith("STS.")
    token_file.write_text("eyJ.forged.sig")
    with pytest.raises(acr_auth.ApiError) as info:
        acr_auth.OidcCredentials(session_name="another-session").get()
    assert info.value.code == "AuthenticationFail.OIDCToken.Invalid"
    assert "forged" not in str(info.value)


def test_ecs_metadata_and_profile_and_chain(isolated, monkeypatch):
    assert acr_auth.EcsMetadataCredentials().get().access_key_id.startswith("STS.")
    aliyun = isolated / ".aliyun"
    aliyun.mkdir()
    (aliyun / "config.json").write_text(json.dumps({"current": "a", "profiles": [
        {"name": "a", "mode": "AK", "access_key_id": "LTAIprofile", "access_key_secret": "p"},
        {"name": "b", "mode": "StsToken", "access_key_id": "STS.b", "access_key_secret": "s", "sts_token": "t"},
    ]}))
    assert acr_auth.ProfileCredentials().get().access_key_id == "LTAIprofile"
    assert acr_auth.ProfileCredentials("b").get().security_token == "t"
    with pytest.raises(acr_auth.CredentialsError, match="profile \"nope\" not found"):
        acr_auth.ProfileCredentials("nope")
    assert acr_auth.DefaultCredentialChain().get().access_key_id == "LTAIprofile"
    assert acr_auth.DefaultCredentialChain(profile="b").get().access_key_id == "STS.b"


def test_empty_chain_lists_every_source(isolated, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    with pytest.raises(acr_auth.CredentialsError) as info:
        acr_auth.DefaultCredentialChain().get()
    text = str(info.value)
    assert "no credentials found" in text and "6. credentials URI: skipped" in text
