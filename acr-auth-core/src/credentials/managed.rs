//! The ACK managed-role payload: Secret `kube-system/addon.aliyuncsmanagedacrrole.token`, key
//! `addon.token.config`, a JSON object whose `access.key.id`, `access.key.secret` and
//! `security.token` are each base64 of a 16-byte IV followed by AES-128-CBC/PKCS#7 ciphertext
//! under `keyring`.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::Credentials;
use crate::error::Error;

const CTX: &str = "ACK managed-role token";

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

fn decrypt(field: &str, encoded: &str, key: &[u8; 16]) -> Result<String, Error> {
    let bad = |what: &str| Error::credentials(CTX, format!("{field}: {what}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("not base64"))?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(bad("not a 16-byte IV followed by whole AES blocks"));
    }
    let (iv, ciphertext) = raw.split_at(16);
    let mut buf = ciphertext.to_vec();
    let plain = Aes128CbcDec::new_from_slices(key, iv)
        .map_err(|_| bad("not a 16-byte IV"))?
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| bad("does not decrypt under the keyring (bad padding)"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad("decrypts to bytes that are not UTF-8"))
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, Error> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::credentials(CTX, format!("field {key:?} is missing or not a string")))
}

/// Decodes the `addon.token.config` JSON into STS credentials.
pub fn decode_managed_role_token(config_json: &str) -> Result<Credentials, Error> {
    let obj = match serde_json::from_str::<Value>(config_json) {
        Ok(Value::Object(o)) => o,
        _ => {
            return Err(Error::credentials(
                CTX,
                "addon.token.config is not a JSON object",
            ))
        }
    };
    let keyring = text(&obj, "keyring")?;
    let key: [u8; 16] = keyring.as_bytes().try_into().map_err(|_| {
        Error::credentials(
            CTX,
            format!("keyring must be 16 bytes, found {}", keyring.len()),
        )
    })?;
    let expiration = text(&obj, "expiration")?;
    let expires_at = crate::time::parse_iso8601(expiration).ok_or_else(|| {
        Error::credentials(
            CTX,
            format!(
                "field expiration {}",
                crate::response::not_a_wire_time(expiration)
            ),
        )
    })?;
    Ok(Credentials::new(
        decrypt("access.key.id", text(&obj, "access.key.id")?, &key)?,
        decrypt("access.key.secret", text(&obj, "access.key.secret")?, &key)?,
    )
    .with_security_token(decrypt(
        "security.token",
        text(&obj, "security.token")?,
        &key,
    )?)
    .with_expiry(expires_at))
}
