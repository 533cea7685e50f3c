"""Type stubs of the native module acr_auth._acr_auth."""
from datetime import datetime, timedelta
from os import PathLike
from typing import Any, Awaitable, Dict, List, Mapping, Optional, Tuple, Union, final

from typing_extensions import disjoint_base

from ._types import (
    HostOverride,
    InstanceEndpoint,
    JsonPatchOperation,
    RegistryItem,
    ResolvedHost,
    SecretManifest,
    WebhookConfig,
)

__all__ = [
    "AcrClient",
    "AssumeRoleCredentials",
    "Credentials",
    "CredentialsProvider",
    "DefaultCredentialChain",
    "EcsMetadataCredentials",
    "EnvCredentials",
    "HelperConfig",
    "LoginResolver",
    "OidcCredentials",
    "ProfileCredentials",
    "RegistryToken",
    "StaticCredentials",
    "__version__",
    "desired_secret",
    "docker_config_json",
    "percent_encode",
    "service_account_patch",
    "sign_roa",
    "sign_rpc",
    "sign_v3",
]

__version__: str

def percent_encode(s: str) -> str: ...
def sign_rpc(method: str, params: Mapping[str, str], access_key_secret: str) -> str: ...
def sign_roa(
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    access_key_secret: str,
) -> str: ...
def sign_v3(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
) -> Dict[str, str]: ...

@final
class Credentials:
    def __new__(
        cls, access_key_id: str, access_key_secret: str, security_token: Optional[str] = None
    ) -> "Credentials": ...
    @property
    def access_key_id(self) -> str: ...
    @property
    def access_key_secret(self) -> str: ...
    @property
    def security_token(self) -> Optional[str]: ...
    @property
    def expiration(self) -> Optional[datetime]: ...

@disjoint_base
class CredentialsProvider:
    def get(self) -> Credentials: ...
    def get_async(self) -> Awaitable[Credentials]: ...

@final
class StaticCredentials(CredentialsProvider):
    def __new__(
        cls, access_key_id: str, access_key_secret: str, security_token: Optional[str] = None
    ) -> "StaticCredentials": ...

@final
class EnvCredentials(CredentialsProvider):
    def __new__(cls) -> "EnvCredentials": ...

@final
class ProfileCredentials(CredentialsProvider):
    def __new__(cls, profile: Optional[str] = None) -> "ProfileCredentials": ...

@final
class EcsMetadataCredentials(CredentialsProvider):
    def __new__(cls, role_name: Optional[str] = None) -> "EcsMetadataCredentials": ...

@final
class AssumeRoleCredentials(CredentialsProvider):
    def __new__(
        cls,
        source: CredentialsProvider,
        role_arn: str,
        session_name: Optional[str] = None,
        duration_seconds: int = 3600,
        policy: Optional[str] = None,
        external_id: Optional[str] = None,
        sts_endpoint: Optional[str] = None,
        sts_region: Optional[str] = None,
    ) -> "AssumeRoleCredentials": ...

@final
class OidcCredentials(CredentialsProvider):
    def __new__(
        cls,
        role_arn: Optional[str] = None,
        oidc_provider_arn: Optional[str] = None,
        oidc_token_file: Union[str, "PathLike[str]", None] = None,
        session_name: Optional[str] = None,
        duration_seconds: int = 3600,
        sts_endpoint: Optional[str] = None,
    ) -> "OidcCredentials": ...

@final
class DefaultCredentialChain(CredentialsProvider):
    def __new__(cls, profile: Optional[str] = None) -> "DefaultCredentialChain": ...

@final
class RegistryToken:
    def __new__(cls, username: str, password: str, expires_at: datetime) -> "RegistryToken": ...
    def __reduce__(self) -> Tuple[Any, Tuple[str, str, datetime]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def expires_at(self) -> datetime: ...

@final
class AcrClient:
    def __new__(
        cls,
        region: str,
        credentials: Optional[CredentialsProvider] = None,
        endpoint: Optional[str] = None,
        vpc: bool = False,
        *,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        max_attempts: Optional[int] = None,
        initial_backoff: Optional[float] = None,
        max_backoff: Optional[float] = None,
    ) -> "AcrClient": ...
    def get_authorization_token(self, instance_id: Optional[str] = None) -> RegistryToken: ...
    def get_authorization_token_async(self, instance_id: Optional[str] = None) -> Awaitable[RegistryToken]: ...
    def list_instance_endpoints(self, instance_id: str) -> List[InstanceEndpoint]: ...
    def list_instance_endpoints_async(self, instance_id: str) -> Awaitable[List[InstanceEndpoint]]: ...

@final
class LoginResolver:
    def __new__(
        cls,
        credentials: Optional[CredentialsProvider] = None,
        overrides: Optional[Mapping[str, HostOverride]] = None,
        endpoint: Optional[str] = None,
        *,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        max_attempts: Optional[int] = None,
        initial_backoff: Optional[float] = None,
        max_backoff: Optional[float] = None,
    ) -> "LoginResolver": ...
    def resolve(self, server: str) -> ResolvedHost: ...
    def resolve_async(self, server: str) -> Awaitable[ResolvedHost]: ...
    def login(self, server: str) -> RegistryToken: ...
    def login_async(self, server: str) -> Awaitable[RegistryToken]: ...

@final
class HelperConfig:
    @staticmethod
    def from_configmap(data: Mapping[str, str]) -> "HelperConfig": ...
    @staticmethod
    def from_yaml(text: str) -> "HelperConfig": ...
    @staticmethod
    def from_managed_json(text: str) -> "HelperConfig": ...
    @property
    def watch_namespaces(self) -> Optional[List[str]]: ...
    @property
    def service_accounts(self) -> Optional[List[str]]: ...
    @property
    def exclude_namespaces(self) -> List[str]: ...
    @property
    def expiring_threshold(self) -> timedelta: ...
    @property
    def secret_name(self) -> str: ...
    @property
    def rrsa_enabled(self) -> bool: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def registries(self) -> List[RegistryItem]: ...
    @property
    def webhook(self) -> WebhookConfig: ...

def docker_config_json(entries: Mapping[str, Union[RegistryToken, Tuple[str, str]]]) -> str: ...
def desired_secret(
    namespace: str,
    entries: Mapping[str, Union[RegistryToken, Tuple[str, str]]],
    secret_name: str = "acr-credential-secret-aggregation",
) -> SecretManifest: ...
def service_account_patch(
    service_account: Mapping[str, Any], secret_name: str = "acr-credential-secret-aggregation"
) -> Optional[List[JsonPatchOperation]]: ...
