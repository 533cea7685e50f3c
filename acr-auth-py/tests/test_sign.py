"""The signers, against Alibaba's documented vector and the official SDK on random input."""
import random
import string
import urllib.parse

import pytest
from alibabacloud_openapi_util.client import Client as OpenApiUtil

import acr_auth

ALPHABET = list(string.ascii_letters + string.digits) + list(" *~+/=&?%:#@!$'()[]\"<>^`{|}") + ["é", "中", "🚀"]


def rand_text(rng, n=None):
    n = n if n is not None else rng.choice([rng.randint(0, 20), rng.randint(300, 1500)])
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def rand_name(rng):
    return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 12)))


def test_documented_rpc_vector():
    params = {
        "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26",
    }
    assert acr_auth.sign_rpc("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_documented_v3_vector():
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances",
        "x-acs-date": "2023-10-26T09:01:01Z", "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0",
        "x-acs-version": "2014-05-26",
    }
    query = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
    added = acr_auth.sign_v3("POST", "/", query, headers, b"", "YourAccessKeyId", "YourAccessKeySecret")
    assert added["x-acs-content-sha256"] == empty
    assert added["Authorization"].endswith("Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804")


@pytest.mark.parametrize("seed", range(3))
def test_rpc_matches_official_sdk(seed):
    rng = random.Random(seed)
    for _ in range(100):
        params = {rand_name(rng): rand_text(rng) for _ in range(rng.randint(1, 8))}
        params["SecurityToken"] = "CAIS" + rand_text(rng, 400) + "+/="
        secret = rand_text(rng, 16)
        method = rng.choice(["GET", "POST"])
        assert acr_auth.sign_rpc(method, params, secret) == OpenApiUtil.get_rpcsignature(params, method, secret)


class _Req:
    def __init__(self, method, pathname, headers, query):
        self.method, self.pathname, self.headers, self.query = method, pathname, headers, query


@pytest.mark.parametrize("seed", range(3))
def test_roa_and_v3_match_official_sdk(seed):
    rng = random.Random(100 + seed)
    for _ in range(100):
        headers = {"accept": "application/json", "date": "Wed, 01 May 2024 08:00:00 GMT",
                   "x-acs-version": "2016-06-07", "x-acs-signature-nonce": rand_name(rng)}
        for _ in range(rng.randint(0, 3)):
            headers["x-acs-" + rand_name(rng).lower()] = rand_text(rng, 10).strip() or "v"
        query = {rand_name(rng): rand_text(rng) for _ in range(rng.randint(0, 4))}
        secret = rand_text(rng, 16)
        sts = OpenApiUtil.get_string_to_sign(_Req("GET", "/tokens", headers, query))
        assert acr_auth.sign_roa("GET", "/tokens", headers, query, secret) == OpenApiUtil.get_roasignature(sts, secret)

        body = rand_text(rng).encode()
        v3_headers = dict(headers, host="cr.cn-hangzhou.aliyuncs.com")
        added = acr_auth.sign_v3("POST", "/", query, v3_headers, body, "AKID", secret)
        signed = dict(v3_headers, **{"x-acs-content-sha256": added["x-acs-content-sha256"]})
        expected = OpenApiUtil.get_authorization(
            _Req("POST", "/", signed, query), "ACS3-HMAC-SHA256", added["x-acs-content-sha256"], "AKID", secret
        )
        assert added["Authorization"] == expected


def test_percent_encode_matches_rfc3986_quote():
    rng = random.Random(7)
    for _ in range(500):
        s = rand_text(rng)
        assert acr_auth.percent_encode(s) == urllib.parse.quote(s, safe="~")


def test_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match="unsupported HTTP method"):
        acr_auth.sign_rpc("PATCH", {}, "s")
