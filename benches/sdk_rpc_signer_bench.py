#!/usr/bin/env python3
"""Times the official Alibaba Cloud Python SDK RPC signers on the request the Rust benches use
(benches/lib.rs, `get_authorization_token_params`), for comparison with `sign_rpc/signature`.

Run with the test venv: .venv/bin/python benches/sdk_rpc_signer_bench.py
It prints the signature (compare with the Rust one) and microseconds per call.
"""
import timeit

from alibabacloud_openapi_util.client import Client as OpenApiUtil
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer import rpc_signature_composer as core_rpc

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
_core_sts = getattr(core_rpc, "__compose_string_to_sign")


def openapi_util():
    return OpenApiUtil.get_rpcsignature(PARAMS, "POST", SECRET)


def legacy_core():
    return sha_hmac1.get_sign_string(_core_sts("POST", dict(PARAMS)), SECRET + "&")


def per_call_us(fn, number=20000, repeat=5):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


if __name__ == "__main__":
    assert openapi_util() == legacy_core()
    print(f"signature: {openapi_util()}")
    print(f"alibabacloud-openapi-util get_rpcsignature: {per_call_us(openapi_util):.2f} us/call")
    print(f"aliyun-python-sdk-core RPC composer:        {per_call_us(legacy_core):.2f} us/call")
