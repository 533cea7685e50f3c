"""Typed shapes of the dicts acr_auth returns (``TypedDict``: plain dicts at run time)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List, Optional, TypedDict

__all__ = [
    "ConfigProblem",
    "HostOverride",
    "InstanceDomain",
    "InstanceEndpoint",
    "JsonPatchOperation",
    "ObjectMeta",
    "RegistryItem",
    "ResolvedHost",
    "SecretManifest",
    "WebhookConfig",
]


class InstanceDomain(TypedDict):
    """One domain of an instance endpoint."""

    domain: str
    #: ``SYSTEM`` or ``USER`` (a custom domain).
    type: str


class InstanceEndpoint(TypedDict):
    """One endpoint of an Enterprise Edition instance (``ListInstanceEndpoint``)."""

    #: ``internet`` or ``vpc``.
    endpoint_type: str
    enabled: bool
    status: str
    domains: List[InstanceDomain]


class RegistryItem(TypedDict):
    """One item of ``acr-registry-info`` (``customAccessKeySecret`` is never returned)."""

    instance_id: Optional[str]
    region_id: Optional[str]
    domains: List[str]
    custom_domains: List[str]
    assume_role_arn: Optional[str]
    expire_duration: timedelta
    role_session_name: Optional[str]
    sts_endpoint: Optional[str]
    rrsa_role_arn: Optional[str]
    rrsa_oidc_provider_arn: Optional[str]
    custom_access_key: Optional[str]


class WebhookConfig(TypedDict):
    """``webhook-configuration``."""

    enabled: bool
    #: ``Ignore`` or ``Fail``.
    failure_policy: str
    timeout_seconds: int


class ConfigProblem(TypedDict):
    """One problem of an invalid ``acr-configuration`` (``ConfigError.errors``)."""

    key: str
    path: str
    line: Optional[int]
    column: Optional[int]
    message: str


class HostOverride(TypedDict, total=False):
    """How ``LoginResolver`` reaches a host the ACR host grammar does not describe."""

    #: Enterprise Edition instance id (``cri-...``); absent: Personal Edition, or the instance
    #: named in the host.
    instance_id: Optional[str]
    #: Region; absent: the host's.
    region: Optional[str]


class ResolvedHost(TypedDict):
    """A registry host resolved by ``LoginResolver.resolve``."""

    host: str
    region: str
    #: ``None`` for the Personal Edition.
    instance_id: Optional[str]


class ObjectMeta(TypedDict, total=False):
    """The ``metadata`` of a manifest acr_auth renders."""

    name: str
    namespace: str
    labels: Dict[str, str]
    annotations: Dict[str, str]


class SecretManifest(TypedDict):
    """A ``kubernetes.io/dockerconfigjson`` Secret (``desired_secret``)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    type: str
    data: Dict[str, str]


class _JsonPatchOperationRequired(TypedDict):
    op: str
    path: str


class JsonPatchOperation(_JsonPatchOperationRequired, total=False):
    """One RFC 6902 JSON patch operation (``service_account_patch``)."""

    value: Any
