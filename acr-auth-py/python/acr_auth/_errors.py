"""The exception hierarchy of acr_auth. Raised by the native module; never contains a secret."""
from __future__ import annotations

from typing import Any, List, Optional

from ._types import ConfigProblem


class AcrAuthError(Exception):
    """Base class of every acr_auth error.

    Attributes:
        kind: the Rust error kind (``api``, ``transport``, ``timeout``, ``credentials``, ...).
        message: the message without its context.
        retryable: whether the same call may succeed if retried.
    """

    def __init__(
        self,
        text: str,
        *,
        kind: str = "",
        message: Optional[str] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        status: Optional[int] = None,
        retryable: bool = False,
        **_: Any,
    ) -> None:
        super().__init__(text)
        self.kind = kind
        self.message = message if message is not None else text
        self.code = code
        self.request_id = request_id
        self.status = status
        self.retryable = retryable


class ApiError(AcrAuthError):
    """Alibaba Cloud answered with an error, or with a response that could not be read.

    Attributes:
        code: Alibaba's ``Code`` (``NoPrivilege``, ``Throttling.User``...), if any.
        request_id: Alibaba's ``RequestId``, to quote to support.
        status: the HTTP status.
    """


class TransportError(AcrAuthError):
    """The request did not complete (connection, TLS, timeout). Usually retryable."""


class CredentialsError(AcrAuthError):
    """No usable credentials, or a credentials source failed."""


class InvalidArgumentError(AcrAuthError, ValueError):
    """An argument is invalid (region, endpoint, role ARN, session settings...)."""


class ConfigError(AcrAuthError, ValueError):
    """An ``acr-configuration`` is invalid.

    Attributes:
        errors: every problem, as dicts with ``key``, ``path``, ``line``, ``column``, ``message``
            (``ConfigProblem``).
    """

    def __init__(self, text: str, *, errors: Optional[List[ConfigProblem]] = None, **kwargs: Any) -> None:
        super().__init__(text, kind="config", **kwargs)
        self.errors: List[ConfigProblem] = list(errors or [])
