//! Reading Alibaba's JSON responses: error bodies in either field spelling, `IsSuccess: false`,
//! and typed errors for anything malformed.

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::http::Response;

/// A field by name, ignoring ASCII case (`RequestId`, `requestId` and `requestid` all match).
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    match field(obj, name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns a response into its JSON object, or the error it describes.
///
/// - a non-2xx status is an API error with `Code`, `Message`, `RequestId` when the body has them;
/// - `IsSuccess: false` on 2xx is an API error too;
/// - a 2xx body that is not a JSON object is an invalid-response error.
pub(crate) fn json_object(response: &Response, context: &str) -> Result<Map<String, Value>, Error> {
    let parsed: Option<Map<String, Value>> = match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let ok_status = (200..300).contains(&response.status);
    let Some(obj) = parsed else {
        return Err(if ok_status {
            Error::invalid_response(context, "response body is not a JSON object")
                .with_status(response.status)
        } else {
            Error::api(
                context,
                response.status,
                None,
                // Not "HTTP {status} ...": the status is a field of the error and its Display
                // already prints it.
                "the response body is not Alibaba's error JSON",
                None,
            )
        });
    };
    let request_id = string_field(&obj, "RequestId");
    let is_success = field(&obj, "IsSuccess").and_then(Value::as_bool);
    if !ok_status || is_success == Some(false) {
        let code = string_field(&obj, "Code");
        let message = string_field(&obj, "Message")
            .unwrap_or_else(|| "the service reported a failure without a message".to_owned());
        return Err(Error::api(
            context,
            response.status,
            code,
            message,
            request_id,
        ));
    }
    Ok(obj)
}

/// A required string field.
pub(crate) fn required_str(
    obj: &Map<String, Value>,
    name: &str,
    context: &str,
) -> Result<String, Error> {
    match field(obj, name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Error::invalid_response(
            context,
            format!("field {name} is empty"),
        )),
        Some(other) => Err(Error::invalid_response(
            context,
            format!(
                "field {name} should be a string, found {}",
                type_name(other)
            ),
        )),
        None => Err(Error::invalid_response(
            context,
            format!("field {name} is missing"),
        )),
    }
}

/// A required non-negative integer field; a string of digits is accepted too.
pub(crate) fn required_u64(
    obj: &Map<String, Value>,
    name: &str,
    context: &str,
) -> Result<u64, Error> {
    let wrong = |what: &str| {
        Error::invalid_response(
            context,
            format!("field {name} should be a non-negative integer, found {what}"),
        )
    };
    match field(obj, name) {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            if n.is_i64() {
                wrong(&format!("the negative number {n}"))
            } else {
                wrong(&format!("{n} (a fraction, or too large for 64 bits)"))
            }
        }),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| wrong(&format!("the string {}", shortened(s)))),
        Some(other) => Err(wrong(type_name(other))),
        None => Err(Error::invalid_response(
            context,
            format!("field {name} is missing"),
        )),
    }
}

/// A required field of Unix epoch milliseconds (ACR `ExpireTime`, `expireDate`), as a time no
/// later than 9999-12-31T23:59:59Z.
pub(crate) fn required_epoch_millis(
    obj: &Map<String, Value>,
    name: &str,
    context: &str,
) -> Result<SystemTime, Error> {
    let ms = required_u64(obj, name, context)?;
    crate::time::from_epoch_millis(ms).ok_or_else(|| {
        Error::invalid_response(
            context,
            format!("field {name} is {ms} ms after the Unix epoch, later than {LATEST_TEXT}"),
        )
    })
}

/// A required ISO 8601 timestamp field (STS `Expiration`), as a time from 1970 to 9999.
pub(crate) fn required_iso8601(
    obj: &Map<String, Value>,
    name: &str,
    context: &str,
) -> Result<SystemTime, Error> {
    let text = required_str(obj, name, context)?;
    crate::time::parse_iso8601(&text).ok_or_else(|| {
        Error::invalid_response(context, format!("field {name} {}", not_a_wire_time(&text)))
    })
}

const LATEST_TEXT: &str = "9999-12-31T23:59:59Z";

/// The end of "field X ...", when `text` is not an ISO 8601 time in the accepted range.
pub(crate) fn not_a_wire_time(text: &str) -> String {
    format!(
        "{} is not an ISO 8601 time from 1970-01-01T00:00:00Z to {LATEST_TEXT}",
        shortened(text)
    )
}

/// `text` quoted, cut to its first 40 characters: enough to recognise a bad timestamp without
/// copying a whole hostile body into the error.
fn shortened(text: &str) -> String {
    const KEEP: usize = 40;
    if text.chars().count() <= KEEP {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(KEEP).collect();
        format!("{head:?}...")
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
