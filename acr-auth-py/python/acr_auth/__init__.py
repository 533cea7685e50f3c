"""acr_auth: short-lived Alibaba Cloud Container Registry credentials.

Signing (``sign_rpc``, ``sign_roa``, ``sign_v3``, ``percent_encode``), credentials providers
and the default chain, the ACR client (blocking and ``async``), ``acr-configuration`` parsing,
``.dockerconfigjson`` rendering and the pull-Secret plan helpers, all implemented in Rust.
Blocking calls release the GIL while Rust works.
"""
from ._acr_auth import (
    AcrClient,
    AssumeRoleCredentials,
    Credentials,
    CredentialsProvider,
    DefaultCredentialChain,
    EcsMetadataCredentials,
    EnvCredentials,
    HelperConfig,
    OidcCredentials,
    ProfileCredentials,
    RegistryToken,
    StaticCredentials,
    __version__,
    desired_secret,
    docker_config_json,
    percent_encode,
    service_account_patch,
    sign_roa,
    sign_rpc,
    sign_v3,
)
from ._errors import (
    AcrAuthError,
    ApiError,
    ConfigError,
    CredentialsError,
    InvalidArgumentError,
    TransportError,
)

__all__ = [
    "AcrAuthError",
    "AcrClient",
    "ApiError",
    "AssumeRoleCredentials",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "DefaultCredentialChain",
    "EcsMetadataCredentials",
    "EnvCredentials",
    "HelperConfig",
    "InvalidArgumentError",
    "OidcCredentials",
    "ProfileCredentials",
    "RegistryToken",
    "StaticCredentials",
    "TransportError",
    "__version__",
    "desired_secret",
    "docker_config_json",
    "percent_encode",
    "service_account_patch",
    "sign_roa",
    "sign_rpc",
    "sign_v3",
]
