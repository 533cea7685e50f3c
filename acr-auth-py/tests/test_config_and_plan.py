"""HelperConfig (same errors as Rust), .dockerconfigjson and the plan helpers."""
import base64
import datetime
import json
import pathlib
import subprocess
import sys

import pytest

import acr_auth

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_configmap_defaults_and_values():
    c = acr_auth.HelperConfig.from_configmap({})
    assert c.watch_namespaces == ["default"] and c.service_accounts == ["default"]
    assert c.expiring_threshold == datetime.timedelta(minutes=15)
    c = acr_auth.HelperConfig.from_configmap({
        "watch-namespace": "ALL",
        "service-account": "*",
        "expiring-threshold": "1h30m",
        "acr-registry-info": '[{"instanceId": "cri-abc", "regionId": "cn-beijing", "domains": ["a.example.com"], "expireDuration": 1200}]',
        "webhook-configuration": "enable: true\nfailure-policy: fail\n",
    })
    assert c.watch_namespaces is None and c.service_accounts is None
    assert c.expiring_threshold == datetime.timedelta(hours=1, minutes=30)
    r = c.registries[0]
    assert (r["instance_id"], r["region_id"], r["domains"]) == ("cri-abc", "cn-beijing", ["a.example.com"])
    assert r["expire_duration"] == datetime.timedelta(seconds=1200)
    assert c.webhook == {"enabled": True, "failure_policy": "Fail", "timeout_seconds": 10}
    assert "None" in repr(c)


def test_config_errors_are_the_rust_errors():
    with pytest.raises(acr_auth.ConfigError) as info:
        acr_auth.HelperConfig.from_configmap({
            "acr-registry-info": "- instanceId: 123456\n",
            "expiring-threshold": "15",
        })
    e = info.value
    assert isinstance(e, ValueError)
    assert str(e).startswith("invalid configuration (2 errors):")
    # The same text the Rust CLI prints (acr-auth-core tests/config.rs asserts it too).
    assert ('acr-registry-info[0].instanceId (line 1, column 15): expected a string, found the number 123456 '
            '(YAML reads it unquoted as a number); quote it: instanceId: "123456"') in str(e)
    by_key = {x["key"]: x for x in e.errors}
    assert by_key["acr-registry-info"]["path"] == "[0].instanceId"
    assert (by_key["acr-registry-info"]["line"], by_key["acr-registry-info"]["column"]) == (1, 15)
    assert by_key["expiring-threshold"]["line"] is None


def test_from_yaml_and_managed_json():
    c = acr_auth.HelperConfig.from_yaml("kind: ConfigMap\ndata:\n  watch-namespace: dev\n  colour: blue\n")
    assert c.watch_namespaces == ["dev"]
    assert c.warnings == ['unknown key "colour" ignored']
    m = acr_auth.HelperConfig.from_managed_json('{"AcrInstanceInfo": [{"instanceId": "cri-x"}], "enableRRSA": true}')
    assert m.rrsa_enabled and m.registries[0]["instance_id"] == "cri-x"
    with pytest.raises(acr_auth.ConfigError, match="expected ConfigMap"):
        acr_auth.HelperConfig.from_yaml("kind: Secret\n")


def test_docker_config_json_and_desired_secret(fake_cloud):
    client = acr_auth.AcrClient("cn-hangzhou", credentials=acr_auth.StaticCredentials("LTAItestkey", "test-secret"),
                                endpoint=f"http://{fake_cloud}")
    token = client.get_authorization_token()
    text = acr_auth.docker_config_json({"registry.cn-hangzhou.aliyuncs.com": token, "mirror.example.com": ("u", "p:w")})
    auths = json.loads(text)["auths"]
    assert auths["mirror.example.com"]["auth"] == base64.b64encode(b"u:p:w").decode()
    assert auths["registry.cn-hangzhou.aliyuncs.com"]["password"] == token.password

    secret = acr_auth.desired_secret("dev", {"registry.cn-hangzhou.aliyuncs.com": token})
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["namespace"] == "dev"
    assert secret["metadata"]["name"] == "acr-credential-secret-aggregation"
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"}
    expiry = secret["metadata"]["annotations"]["acr-credential-helper.alibabacloud.com/expires-at"]
    assert expiry == token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    inner = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert inner["auths"]["registry.cn-hangzhou.aliyuncs.com"]["username"] == token.username
    with pytest.raises(TypeError, match="RegistryToken or a \\(username, password\\) tuple"):
        acr_auth.docker_config_json({"h": 42})


def test_service_account_patch_keeps_other_entries_and_records_ours():
    sa = {"metadata": {"name": "default", "resourceVersion": "41"}, "imagePullSecrets": [{"name": "theirs"}]}
    patch = acr_auth.service_account_patch(sa, "ours")
    assert patch == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}},
        {"op": "add", "path": "/metadata/annotations",
         "value": {"acr-credential-helper.alibabacloud.com/managed-image-pull-secrets": "ours"}},
    ]
    assert acr_auth.service_account_patch({"imagePullSecrets": [{"name": "ours"}]}, "ours") is None
    assert acr_auth.service_account_patch({"metadata": {}})[0]["path"] == "/imagePullSecrets"


def test_service_account_patch_sets_one_annotation_key_and_keeps_the_others():
    sa = {"metadata": {"name": "default", "annotations": {"meta.helm.sh/release-name": "web"}}}
    patch = acr_auth.service_account_patch(sa, "ours")
    assert patch == [
        {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]},
        {"op": "add",
         "path": "/metadata/annotations/acr-credential-helper.alibabacloud.com~1managed-image-pull-secrets",
         "value": "ours"},
    ]


def test_example_script_renders_a_pull_secret(fake_cloud, tmp_path):
    env = {"ACR_AUTH_ACR_ENDPOINT": f"http://{fake_cloud}", "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAItestkey",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-secret", "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/render_pull_secret.py"), "--namespace", "dev",
         "--region", "cn-hangzhou", "--instance-id", "cri-testinstance01"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    manifest = json.loads(out)
    assert manifest["kind"] == "Secret" and manifest["metadata"]["namespace"] == "dev"
    hosts = json.loads(base64.b64decode(manifest["data"][".dockerconfigjson"]))["auths"]
    assert "acme-registry.cn-hangzhou.cr.aliyuncs.com" in hosts and "registry.acme.example" in hosts
