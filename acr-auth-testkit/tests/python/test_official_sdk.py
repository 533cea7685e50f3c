"""The fake cloud, driven by Alibaba's official Python SDK clients.

If the fake verified signatures differently from Alibaba, these official clients would be
refused: every call here is signed by the SDK itself (V3 by default, HMAC-SHA1 with
signature_algorithm='v2').
"""
import time

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_cr20181201.client import Client as CrClient
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_util import models as util_models

INSTANCE = "cri-testinstance01"
AK, SK = "LTAItestkey", "test-secret"


def config(endpoint, algorithm, ak=AK, sk=SK, token=None):
    cfg = openapi_models.Config(
        access_key_id=ak,
        access_key_secret=sk,
        security_token=token,
        endpoint=endpoint,
        protocol="http",
        region_id="cn-hangzhou",
    )
    if algorithm == "v2":
        cfg.signature_algorithm = "v2"
    return cfg


ALGORITHMS = ["v3", "v2"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_enterprise_token(fake_cloud, algorithm):
    client = CrClient(config(fake_cloud, algorithm))
    resp = client.get_authorization_token(cr_models.GetAuthorizationTokenRequest(instance_id=INSTANCE))
    body = resp.body
    assert body.is_success is True
    assert body.temp_username == "temp_user_cr"
    assert len(body.authorization_token) == 64
    remaining = body.expire_time / 1000 - time.time()
    assert 3500 < remaining <= 3601


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_list_instance_endpoint(fake_cloud, algorithm):
    client = CrClient(config(fake_cloud, algorithm))
    resp = client.list_instance_endpoint(
        cr_models.ListInstanceEndpointRequest(instance_id=INSTANCE, module_name="Registry")
    )
    domains = [d.domain for ep in resp.body.endpoints for d in ep.domains]
    assert "acme-registry.cn-hangzhou.cr.aliyuncs.com" in domains
    assert "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com" in domains


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_personal_token_via_generic_call_api(fake_cloud, algorithm):
    # The official cr20160607 SDK discards the body, so tools call the API generically.
    client = OpenApiClient(config(fake_cloud, algorithm))
    params = openapi_models.Params(
        action="GetAuthorizationToken",
        version="2016-06-07",
        protocol="HTTP",
        pathname="/tokens",
        method="GET",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="json",
    )
    resp = client.call_api(params, openapi_models.OpenApiRequest(), util_models.RuntimeOptions())
    data = resp["body"]["data"]
    assert data["tempUserName"] == "cr_temp_user"
    assert data["expireDate"] / 1000 > time.time()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_assume_role_then_use_the_sts_credentials(fake_cloud, algorithm):
    sts = StsClient(config(fake_cloud, algorithm))
    resp = sts.assume_role(
        sts_models.AssumeRoleRequest(
            role_arn="acs:ram::1234567890:role/acr-puller",
            role_session_name="sdk-check",
            duration_seconds=900,
        )
    )
    c = resp.body.credentials
    assert c.access_key_id.startswith("STS.")
    cr = CrClient(config(fake_cloud, algorithm, c.access_key_id, c.access_key_secret, c.security_token))
    token = cr.get_authorization_token(cr_models.GetAuthorizationTokenRequest(instance_id=INSTANCE))
    # Capped by the 900 s STS session.
    assert token.body.expire_time / 1000 - time.time() <= 901


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_secret_is_refused_with_alibabas_code(fake_cloud, algorithm):
    client = CrClient(config(fake_cloud, algorithm, sk="wrong-secret"))
    with pytest.raises(Exception) as info:
        client.get_authorization_token(cr_models.GetAuthorizationTokenRequest(instance_id=INSTANCE))
    assert getattr(info.value, "code", None) == "SignatureDoesNotMatch", repr(info.value)


def test_unknown_access_key_is_refused(fake_cloud):
    client = CrClient(config(fake_cloud, "v3", ak="LTAInobody"))
    with pytest.raises(Exception) as info:
        client.get_authorization_token(cr_models.GetAuthorizationTokenRequest(instance_id=INSTANCE))
    assert getattr(info.value, "code", None) == "InvalidAccessKeyId.NotFound", repr(info.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_list_instance_by_name(fake_cloud, algorithm):
    client = CrClient(config(fake_cloud, algorithm))
    resp = client.list_instance(cr_models.ListInstanceRequest(instance_name="acme", page_no=1, page_size=30))
    ids = [i.instance_id for i in resp.body.instances]
    assert ids == [INSTANCE]
    assert resp.body.total_count == 1
