#!/usr/bin/env python3
"""Render the pull Secret manifest acr-auth would write into a namespace.

    python render_pull_secret.py --namespace dev --region cn-hangzhou [--instance-id cri-xxx]

Credentials come from the Alibaba Cloud default chain (ALIBABA_CLOUD_* variables, aliyun CLI
profile, ECS role...). The manifest goes to stdout as JSON; pipe it to `kubectl apply -f -`.
"""
import argparse
import json
import sys

import acr_auth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--instance-id", help="Enterprise Edition instance (cri-...); default: Personal Edition")
    parser.add_argument("--secret-name", default="acr-credential-secret-aggregation")
    args = parser.parse_args()

    client = acr_auth.AcrClient(args.region)
    try:
        token = client.get_authorization_token(args.instance_id)
        if args.instance_id:
            endpoints = client.list_instance_endpoints(args.instance_id)
            hosts = [d["domain"] for ep in endpoints if ep["enabled"] for d in ep["domains"]]
        else:
            hosts = [f"registry.{args.region}.aliyuncs.com", f"registry-vpc.{args.region}.aliyuncs.com"]
    except acr_auth.AcrAuthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    secret = acr_auth.desired_secret(args.namespace, {host: token for host in hosts}, args.secret_name)
    json.dump(secret, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
