//! Protobuf request bodies, as kubectl's generator commands send them (`kubectl create
//! namespace`, `create serviceaccount`, `create secret`, `create configmap`): the `k8s\0`
//! envelope (`runtime.Unknown`) around the object in the API's protobuf encoding, decoded into
//! the JSON the rest of the fake works on. Only the kinds and fields those commands write are
//! understood; any other body is refused with 415, as before. Checked against a real
//! kube-apiserver by `tests/fake_vs_real.rs`.

use serde_json::{json, Map, Value};

/// The protobuf wire types used by the Kubernetes API.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, in order (field number, value).
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((number, Field::Varint(varint(&mut buf)?))),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                if len > buf.len() {
                    return None;
                }
                let (value, rest) = buf.split_at(len);
                out.push((number, Field::Bytes(value)));
                buf = rest;
            }
            // 64- and 32-bit fixed: not used by these kinds, skipped.
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// A `map<string, string>` (or `map<string, bytes>` with `base64` set: as JSON shows bytes).
fn map_entry(bytes: &[u8], base64: bool) -> Option<(String, Value)> {
    use base64::Engine as _;
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = text(b)?,
            (2, Field::Bytes(b)) if base64 => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (2, Field::Bytes(b)) => value = json!(text(b)?),
            _ => {}
        }
    }
    Some((key, value))
}

/// `ObjectMeta`: the fields a client sets on create.
fn object_meta(bytes: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    let mut finalizers = Vec::new();
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                meta.insert("name".into(), json!(text(b)?));
            }
            (2, Field::Bytes(b)) => {
                meta.insert("generateName".into(), json!(text(b)?));
            }
            (3, Field::Bytes(b)) => {
                meta.insert("namespace".into(), json!(text(b)?));
            }
            (6, Field::Bytes(b)) => {
                meta.insert("resourceVersion".into(), json!(text(b)?));
            }
            (11, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                labels.insert(k, v);
            }
            (12, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                annotations.insert(k, v);
            }
            (14, Field::Bytes(b)) => finalizers.push(json!(text(b)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(meta))
}

/// The object of a protobuf body, as JSON; `None` for anything this fake does not decode.
pub(crate) fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(b"k8s\0")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(type_meta)) => {
                for (m, g) in fields(type_meta)? {
                    match (m, g) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    let raw = raw?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let (mut data, mut binary_data, mut string_data) = (Map::new(), Map::new(), Map::new());
    let mut image_pull_secrets = Vec::new();
    for (n, f) in fields(raw)? {
        match (api_version.as_str(), kind.as_str(), n, f) {
            (_, _, 1, Field::Bytes(b)) => {
                obj.insert("metadata".into(), object_meta(b)?);
            }
            ("v1", "ServiceAccount", 3, Field::Bytes(b)) => {
                let mut name = String::new();
                for (m, g) in fields(b)? {
                    if let (1, Field::Bytes(v)) = (m, g) {
                        name = text(v)?;
                    }
                }
                image_pull_secrets.push(json!({ "name": name }));
            }
            ("v1", "ServiceAccount", 4, Field::Varint(v)) => {
                obj.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            ("v1", "Secret", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                data.insert(k, v);
            }
            ("v1", "Secret", 3, Field::Bytes(b)) => {
                obj.insert("type".into(), json!(text(b)?));
            }
            ("v1", "Secret", 4, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                string_data.insert(k, v);
            }
            ("v1", "ConfigMap", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                data.insert(k, v);
            }
            ("v1", "ConfigMap", 3, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                binary_data.insert(k, v);
            }
            ("v1", "Secret", 5, Field::Varint(v)) | ("v1", "ConfigMap", 4, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("v1", "Namespace" | "ServiceAccount" | "Secret" | "ConfigMap", _, _) => {}
            _ => return None,
        }
    }
    for (key, map) in [
        ("data", data),
        ("binaryData", binary_data),
        ("stringData", string_data),
    ] {
        if !map.is_empty() {
            obj.insert(key.into(), Value::Object(map));
        }
    }
    if !image_pull_secrets.is_empty() {
        obj.insert("imagePullSecrets".into(), Value::Array(image_pull_secrets));
    }
    Some(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |mut v: u64| loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        };
        put(number << 3 | 2);
        put(bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_secret_in_its_envelope_decodes_to_json() {
        let meta = [
            field(1, b"regcred"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let secret = [
            field(1, &meta),
            field(
                2,
                &[field(1, b".dockerconfigjson"), field(2, b"{}")].concat(),
            ),
            field(3, b"kubernetes.io/dockerconfigjson"),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "regcred");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(
            v["data"][".dockerconfigjson"], "e30=",
            "bytes are base64 in JSON"
        );
        assert_eq!(v["type"], "kubernetes.io/dockerconfigjson");
        // Not the envelope, truncated, or an unknown kind: refused.
        assert!(decode(b"{}").is_none());
        assert!(decode(&body[..body.len() - 3]).is_none());
        let other = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &other), field(2, &secret)].concat();
        assert!(decode(&body).is_none());
    }
}
