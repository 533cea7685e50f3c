#!/usr/bin/env python3
"""Signs requests with the official Alibaba Cloud Python SDK signers, for cross-checking.

Reads one JSON request per line on stdin and writes one JSON answer per line on stdout:

  {"scheme": "rpc", "method": "GET", "params": [[k, v], ...], "secret": "..."}
      -> {"openapi_util": "<sig>", "core": "<sig>"}
  {"scheme": "roa", "method": "GET", "path": "/tokens", "headers": [[k, v]...], "query": [[k, v]...], "secret": "..."}
      -> {"openapi_util": "<sig>"}
  {"scheme": "v3", "method": "POST", "path": "/", "query": [...], "headers": [...],
   "payload_sha256": "...", "access_key_id": "...", "secret": "..."}
      -> {"openapi_util": "<Authorization header>"}

Signers used: alibabacloud_openapi_util (the new SDKs' runtime) and aliyunsdkcore (the legacy
SDK core). Nothing here is reimplemented: every signature comes from SDK functions.
"""
import json
import sys

from alibabacloud_openapi_util.client import Client as OpenApiUtil
from aliyunsdkcore.auth.composer import rpc_signature_composer as core_rpc
from aliyunsdkcore.auth.algorithm import sha_hmac1

# Module-level functions with a double-underscore name are not mangled; fetch them by name.
_core_string_to_sign = getattr(core_rpc, "__compose_string_to_sign")


class _Request:
    """The attributes openapi-util reads from a TeaRequest."""

    def __init__(self, method, pathname, headers, query):
        self.method = method
        self.pathname = pathname
        self.headers = headers
        self.query = query


def sign(req):
    scheme = req["scheme"]
    if scheme == "rpc":
        params = dict(req["params"])
        util = OpenApiUtil.get_rpcsignature(params, req["method"], req["secret"])
        sts = _core_string_to_sign(req["method"], dict(params))
        core = sha_hmac1.get_sign_string(sts, req["secret"] + "&")
        return {"openapi_util": util, "core": core}
    if scheme == "roa":
        r = _Request(req["method"], req["path"], dict(req["headers"]), dict(req["query"]))
        sts = OpenApiUtil.get_string_to_sign(r)
        return {"openapi_util": OpenApiUtil.get_roasignature(sts, req["secret"])}
    if scheme == "v3":
        path = OpenApiUtil.get_encode_path(req["path"])
        r = _Request(req["method"], path, dict(req["headers"]), dict(req["query"]))
        auth = OpenApiUtil.get_authorization(
            r, "ACS3-HMAC-SHA256", req["payload_sha256"], req["access_key_id"], req["secret"]
        )
        return {"openapi_util": auth}
    raise ValueError(f"unknown scheme {scheme!r}")


def main():
    for line in sys.stdin:
        line = line.strip()
        if line:
            sys.stdout.write(json.dumps(sign(json.loads(line))) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
