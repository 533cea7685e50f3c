//! The library's one error type.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request did not complete: connection refused or reset, TLS, DNS.
    Transport,
    /// The request timed out (connect or read).
    Timeout,
    /// Alibaba Cloud answered with an error (`Code`/`Message`/`RequestId`), an HTTP error status,
    /// or `IsSuccess: false`.
    Api,
    /// The response could not be understood: too large, not JSON, a missing field, a wrong type.
    InvalidResponse,
    /// An argument or setting given to the library is invalid.
    InvalidInput,
    /// No usable credentials.
    Credentials,
    /// A credentials source is not set up here (no variables, no file, no instance role): a
    /// provider chain moves on to the next source.
    NotConfigured,
}

impl ErrorKind {
    /// A short stable name, usable as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transport => "transport",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Api => "api",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Credentials => "credentials",
            ErrorKind::NotConfigured => "not_configured",
        }
    }
}

/// An error from acr-auth.
///
/// It carries the [`ErrorKind`], the HTTP status and Alibaba's `Code`, `Message` and
/// `RequestId` when the service sent them, and tells whether retrying can help
/// ([`Error::is_retryable`]). Its text never contains a secret.
///
/// Its `Display` is `context: HTTP status Code: message (RequestId id)`, each part only when
/// known, and `HTTP status: message` when there is no `Code`:
///
/// ```
/// use acr_auth_core::Error;
/// let e = Error::api("ACR GET /tokens", 502, None, "the response body is not Alibaba's error JSON", None);
/// assert_eq!(e.to_string(), "ACR GET /tokens: HTTP 502: the response body is not Alibaba's error JSON");
/// ```
pub struct Error {
    kind: ErrorKind,
    context: String,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind`; `context` says what was being done ("ACR GetAuthorizationToken").
    pub fn new(kind: ErrorKind, context: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            status: None,
            code: None,
            message: message.into(),
            request_id: None,
            source: None,
        }
    }

    /// An error answered by the service.
    pub fn api(
        context: impl Into<String>,
        status: u16,
        code: Option<String>,
        message: impl Into<String>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            status: Some(status),
            code,
            request_id,
            ..Self::new(ErrorKind::Api, context, message)
        }
    }

    /// An [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, context, message)
    }

    /// An [`ErrorKind::NotConfigured`] error: `source` is not set up, for `reason`.
    pub fn not_configured(source: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotConfigured, source, reason)
    }

    /// An [`ErrorKind::Credentials`] error.
    pub fn credentials(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Credentials, context, message)
    }

    /// An [`ErrorKind::InvalidResponse`] error.
    pub fn invalid_response(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidResponse, context, message)
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The same error said inside `outer` (what the caller was doing): the context becomes
    /// `outer: context`; kind, status, `Code`, message, `RequestId` and source are kept.
    ///
    /// ```
    /// use acr_auth_core::Error;
    /// let e = Error::api("ACR GetAuthorizationToken", 403, Some("NoPrivilege".into()), "denied", Some("R1".into()))
    ///     .in_context("registry cri-x in cn-hangzhou");
    /// assert_eq!((e.status(), e.code(), e.request_id()), (Some(403), Some("NoPrivilege"), Some("R1")));
    /// assert_eq!(e.context(), "registry cri-x in cn-hangzhou: ACR GetAuthorizationToken");
    /// ```
    pub fn in_context(mut self, outer: impl AsRef<str>) -> Self {
        self.context = format!("{}: {}", outer.as_ref(), self.context);
        self
    }

    /// Takes the HTTP status, `Code` and `RequestId` of `cause` where this error has none, and
    /// keeps `cause` as the [source](std::error::Error::source): an error that summarises
    /// another still answers what the service said.
    pub(crate) fn caused_by(mut self, cause: Error) -> Self {
        self.status = self.status.or(cause.status);
        if self.code.is_none() {
            self.code = cause.code.clone();
        }
        if self.request_id.is_none() {
            self.request_id = cause.request_id.clone();
        }
        self.source = Some(Box::new(cause));
        self
    }

    /// Replaces every occurrence of each secret in the message by `<redacted>` (and their
    /// percent-encoded forms, since Alibaba echoes the string to sign in
    /// `SignatureDoesNotMatch`).
    pub(crate) fn scrub(mut self, secrets: &[&str]) -> Self {
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            let encoded = crate::sign::percent_encode(secret);
            let double = crate::sign::percent_encode(&encoded);
            for form in [secret.to_string(), encoded, double] {
                if self.message.contains(&form) {
                    self.message = self.message.replace(&form, "<redacted>");
                }
            }
        }
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was being done when it failed.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Alibaba's error `Code` (e.g. `NoPrivilege`, `Throttling.User`).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The error message (Alibaba's `Message` for API errors).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Alibaba's `RequestId`, to quote to support.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Whether the same call may succeed if retried (with a fresh nonce and timestamp).
    ///
    /// Retryable: transport errors, timeouts, HTTP 5xx, `Throttling*`, `ServiceUnavailable`,
    /// `InternalError`, `SystemError`, `UnknownError`, `SignatureNonceUsed`. Not retryable:
    /// signature, permission, not-found and input errors.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Transport | ErrorKind::Timeout => true,
            ErrorKind::Api => is_retryable_api_error(self.status, self.code.as_deref()),
            ErrorKind::InvalidResponse => self.status.is_some_and(|s| s >= 500),
            ErrorKind::InvalidInput | ErrorKind::Credentials | ErrorKind::NotConfigured => false,
        }
    }
}

/// The retry classifier for service errors.
pub(crate) fn is_retryable_api_error(status: Option<u16>, code: Option<&str>) -> bool {
    if let Some(code) = code {
        if code.starts_with("Throttling") {
            return true;
        }
        if matches!(
            code,
            "ServiceUnavailable"
                | "InternalError"
                | "SystemError"
                | "UnknownError"
                | "SignatureNonceUsed"
        ) {
            return true;
        }
    }
    status.is_some_and(|s| (500..600).contains(&s))
}

/// A copy keeps everything the error says (kind, context, status, code, message, request id);
/// the underlying `source` error is not clonable and is left out of the copy.
impl Clone for Error {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            context: self.context.clone(),
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
            request_id: self.request_id.clone(),
            source: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.context)?;
        if let Some(status) = self.status {
            // "HTTP 403 NoPrivilege: message", or "HTTP 501: message" without a code.
            let separator = if self.code.is_some() { " " } else { ": " };
            write!(f, "HTTP {status}{separator}")?;
        }
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (RequestId {id})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("context", &self.context)
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_id", &self.request_id)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification_table() {
        let cases: &[(Option<u16>, Option<&str>, bool)] = &[
            (Some(503), Some("ServiceUnavailable"), true),
            (Some(400), Some("Throttling.User"), true),
            (Some(400), Some("Throttling"), true),
            (Some(500), Some("SystemError"), true),
            (Some(500), None, true),
            (Some(502), None, true),
            (Some(400), Some("SignatureNonceUsed"), true),
            (Some(400), Some("SignatureDoesNotMatch"), false),
            (Some(404), Some("InvalidAccessKeyId.NotFound"), false),
            (Some(403), Some("NoPrivilege"), false),
            (Some(403), Some("Forbidden.RAM"), false),
            (Some(400), Some("InvalidTimeStamp.Expired"), false),
            (Some(200), Some("NoPrivilege"), false),
        ];
        for &(status, code, want) in cases {
            let e = Error::api("t", status.unwrap(), code.map(str::to_owned), "m", None);
            assert_eq!(e.is_retryable(), want, "{status:?} {code:?}");
        }
        assert!(Error::new(ErrorKind::Timeout, "t", "m").is_retryable());
        assert!(!Error::invalid_input("t", "m").is_retryable());
    }

    #[test]
    fn display_names_everything_useful() {
        let e = Error::api(
            "ACR GetAuthorizationToken",
            403,
            Some("NoPrivilege".into()),
            "Access denied for this user.",
            Some("E069EB86".into()),
        );
        assert_eq!(
            e.to_string(),
            "ACR GetAuthorizationToken: HTTP 403 NoPrivilege: Access denied for this user. (RequestId E069EB86)"
        );
    }

    #[test]
    fn display_without_code_separates_status_and_message() {
        let e = Error::api(
            "ECS metadata",
            404,
            None,
            "GET /latest/meta-data/region-id failed",
            None,
        );
        assert_eq!(
            e.to_string(),
            "ECS metadata: HTTP 404: GET /latest/meta-data/region-id failed"
        );
    }

    #[test]
    fn http_error_without_alibaba_body_names_the_status_once() {
        let e = crate::acr::parse_token_response(501, b"Not Implemented", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ACR GetAuthorizationToken: HTTP 501: the response body is not Alibaba's error JSON"
        );
        assert_eq!(e.status(), Some(501));
    }

    #[test]
    fn scrub_removes_raw_and_encoded_secrets() {
        let e = Error::api(
            "c",
            400,
            Some("SignatureDoesNotMatch".into()),
            "server string to sign is:POST&%2F&SecurityToken%3DCAIS%252Bab%26X and CAIS+ab",
            None,
        )
        .scrub(&["CAIS+ab"]);
        assert!(!e.message().contains("CAIS"), "{}", e.message());
    }
}
