#!/usr/bin/env python3
"""Per-call time of acr_auth.sign_rpc against the official SDK's RPC signer, on the request the
Rust benches use (benches/lib.rs), so the figures compare.

Run with the test venv after `pip install ./acr-auth-py`:
    .venv/bin/python benches/python_sign_bench.py
"""
import timeit

from alibabacloud_openapi_util.client import Client as OpenApiUtil

import acr_auth

PARAMS = {
    "AccessKeyId": "LTAI5tExampleAccessKeyId",
    "Action": "GetAuthorizationToken",
    "Format": "JSON",
    "InstanceId": "cri-abcdefghijklmnop",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "0123456789abcdef0123456789abcdef",
    "SignatureVersion": "1.0",
    "Timestamp": "2024-05-01T08:00:00Z",
    "Version": "2018-12-01",
}
SECRET = "ExampleAccessKeySecret0123456789"


def per_call_us(fn, number=50000, repeat=5):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


if __name__ == "__main__":
    ours = acr_auth.sign_rpc("POST", PARAMS, SECRET)
    theirs = OpenApiUtil.get_rpcsignature(PARAMS, "POST", SECRET)
    assert ours == theirs == "ijNSbQB6G7T5OQXAAqARMIk5kdo=", (ours, theirs)
    a = per_call_us(lambda: acr_auth.sign_rpc("POST", PARAMS, SECRET))
    b = per_call_us(lambda: OpenApiUtil.get_rpcsignature(PARAMS, "POST", SECRET))
    print(f"acr_auth.sign_rpc:                  {a:.2f} us/call")
    print(f"openapi-util get_rpcsignature:      {b:.2f} us/call")
    print(f"speed-up:                           {b / a:.1f}x")
