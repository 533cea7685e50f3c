#!/usr/bin/env python3
"""Per-call time of acr_auth.sign_rpc against the official SDK's RPC signer, on the request the
Rust benches use (benches/lib.rs), so the figures compare.

Run with the test venv after `pip install ./acr-auth-py`:
    .venv/bin/python benches/python_sign_bench.py
"""

from alibabacloud_openapi_util.client import Client as OpenApiUtil

import acr_auth

# The same request as the Rust benches and the SDK bench script.
from sdk_rpc_signer_bench import PARAMS, SECRET, per_call_us  # noqa: E402


if __name__ == "__main__":
    ours = acr_auth.sign_rpc("POST", PARAMS, SECRET)
    theirs = OpenApiUtil.get_rpcsignature(PARAMS, "POST", SECRET)
    assert ours == theirs == "ijNSbQB6G7T5OQXAAqARMIk5kdo=", (ours, theirs)
    a = per_call_us(lambda: acr_auth.sign_rpc("POST", PARAMS, SECRET))
    b = per_call_us(lambda: OpenApiUtil.get_rpcsignature(PARAMS, "POST", SECRET))
    print(f"acr_auth.sign_rpc:                  {a:.2f} us/call")
    print(f"openapi-util get_rpcsignature:      {b:.2f} us/call")
    print(f"speed-up:                           {b / a:.1f}x")
