//! Property tests: the percent-encoder against an independent reference, and the response
//! parsers, timestamp parsers and host grammar on random and mutated input (typed errors, never
//! a panic).

use acr_auth_core::acr::{parse_token_response, RegistryHost};
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::sign::{percent_decode, percent_encode, percent_encode_path};
use acr_auth_core::time::{
    epoch_secs, format_iso8601, format_rfc1123, from_epoch_millis, from_epoch_secs, parse_iso8601,
    parse_rfc1123, LATEST_EPOCH_SECS,
};
use acr_auth_core::ErrorKind;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

/// RFC 3986 unreserved characters stay; everything else is encoded.
const REFERENCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The last accepted time, 9999-12-31T23:59:59Z, in Unix epoch milliseconds.
const LATEST_MS: u64 = LATEST_EPOCH_SECS * 1000;

const EE_BODY: &str = r#"{"RequestId":"E069EB86-E6AD-4A98-ADDE-0E993390239A","ExpireTime":1571242083000,"Code":"success","IsSuccess":true,"TempUsername":"temp_user_cr","AuthorizationToken":"shaunadadakks:uuczxnjcyeyhdjadkkajsjdjadhyucb"}"#;
const PE_BODY: &str = r#"{"data":{"authorizationToken":"eyJ0aW1lIjoiMTUyNjU0OTc5:0705733****","tempUserName":"cr_temp_user","expireDate":1526549792000},"requestId":"94E89857-B994-44B6-9C4F-DBD200E9E272"}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encoder_matches_reference(s in any::<String>()) {
        let reference = percent_encoding::utf8_percent_encode(&s, REFERENCE).to_string();
        prop_assert_eq!(percent_encode(&s), reference);
    }

    #[test]
    fn encoder_output_is_unreserved_or_uppercase_escapes(s in any::<String>()) {
        let e = percent_encode(&s);
        let b = e.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                prop_assert!(b[i + 1].is_ascii_digit() || (b'A'..=b'F').contains(&b[i + 1]));
                prop_assert!(b[i + 2].is_ascii_digit() || (b'A'..=b'F').contains(&b[i + 2]));
                i += 3;
            } else {
                prop_assert!(b[i].is_ascii_alphanumeric() || b"-_.~".contains(&b[i]), "{}", e);
                i += 1;
            }
        }
    }

    #[test]
    fn decode_inverts_encode(s in any::<String>()) {
        prop_assert_eq!(percent_decode(&percent_encode(&s), false), Some(s.clone()));
        prop_assert_eq!(percent_decode(&percent_encode(&s), true), Some(s.clone()));
        prop_assert_eq!(percent_decode(&percent_encode_path(&s), false), Some(s));
    }

    #[test]
    fn token_parsing_never_panics_on_random_bytes(status in 0u16..600, body in proptest::collection::vec(any::<u8>(), 0..512), personal: bool) {
        let _ = parse_token_response(status, &body, personal);
    }

    #[test]
    fn token_parsing_never_panics_on_mutated_bodies(
        pos in any::<prop::sample::Index>(),
        byte: u8,
        cut in any::<prop::sample::Index>(),
        personal: bool,
    ) {
        let base = if personal { PE_BODY } else { EE_BODY };
        let mut body = base.as_bytes().to_vec();
        let i = pos.index(body.len());
        body[i] = byte;
        let _ = parse_token_response(200, &body, personal);
        let truncated = &base.as_bytes()[..cut.index(base.len())];
        let err = parse_token_response(200, truncated, personal);
        prop_assert!(err.is_err(), "a truncated body must not parse");
    }

    #[test]
    fn token_parsing_types_every_json_value(v in arb_json(), personal: bool) {
        let body = if personal {
            serde_json::json!({"data": {"authorizationToken": v, "tempUserName": "u", "expireDate": 1}})
        } else {
            serde_json::json!({"AuthorizationToken": "p", "TempUsername": "u", "ExpireTime": v})
        };
        if let Err(e) = parse_token_response(200, body.to_string().as_bytes(), personal) {
            prop_assert!(!e.message().is_empty());
        }
    }

    #[test]
    fn epoch_millis_accepted_exactly_up_to_year_9999(ms in prop_oneof![any::<u64>(), 0..=LATEST_MS + 1000]) {
        match from_epoch_millis(ms) {
            Some(t) => {
                prop_assert!(ms <= LATEST_MS);
                prop_assert_eq!(epoch_secs(t), ms / 1000);
                // What is accepted can be written and read back (to the second).
                prop_assert_eq!(parse_iso8601(&format_iso8601(t)), from_epoch_secs(ms / 1000));
            }
            None => prop_assert!(ms > LATEST_MS),
        }
    }

    #[test]
    fn any_signed_epoch_second_formats_and_accepted_ones_round_trip(
        secs in prop_oneof![any::<i64>(), -1000..=LATEST_EPOCH_SECS as i64 + 1000]
    ) {
        let distance = Duration::from_secs(secs.unsigned_abs());
        let t = if secs >= 0 { UNIX_EPOCH.checked_add(distance) } else { UNIX_EPOCH.checked_sub(distance) };
        if let Some(t) = t {
            let (iso, rfc) = (format_iso8601(t), format_rfc1123(t));
            if secs > LATEST_EPOCH_SECS as i64 {
                // Saturated at the last second `time` can write.
                prop_assert_eq!(iso, "9999-12-31T23:59:59Z");
                prop_assert_eq!(rfc, "Fri, 31 Dec 9999 23:59:59 GMT");
            } else {
                let in_range = secs >= 0;
                prop_assert_eq!(parse_iso8601(&iso), in_range.then_some(t), "{}", iso);
                prop_assert_eq!(parse_rfc1123(&rfc), in_range.then_some(t), "{}", rfc);
            }
        }
    }

    #[test]
    fn iso8601_parsing_never_panics_and_round_trips(
        s in prop_oneof![
            "\\PC{0,40}",
            "[0-9]{4,5}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        ]
    ) {
        if let Some(t) = parse_iso8601(&s) {
            let secs = epoch_secs(t);
            prop_assert!(secs <= LATEST_EPOCH_SECS);
            prop_assert_eq!(parse_iso8601(&format_iso8601(t)), from_epoch_secs(secs), "{}", s);
        }
        let _ = parse_rfc1123(&s);
    }

    #[test]
    fn token_expiry_is_a_time_or_a_typed_error(
        expire in prop_oneof![any::<i64>(), -1000..=LATEST_MS as i64 + 1000],
        personal: bool,
    ) {
        let body = if personal {
            serde_json::json!({"data": {"authorizationToken": "p", "tempUserName": "u", "expireDate": expire}})
        } else {
            serde_json::json!({"AuthorizationToken": "p", "TempUsername": "u", "ExpireTime": expire})
        };
        match parse_token_response(200, body.to_string().as_bytes(), personal) {
            Ok(t) => {
                prop_assert!((0..=LATEST_MS as i64).contains(&expire));
                prop_assert_eq!(epoch_secs(t.expires_at) as i64, expire / 1000);
                let _ = (t.to_string(), format!("{t:?}"));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidResponse);
                let name = if personal { "expireDate" } else { "ExpireTime" };
                prop_assert!(e.message().contains(name), "{}", e);
            }
        }
    }

    #[test]
    fn host_parsing_never_panics(s in "\\PC{0,80}") {
        let _ = RegistryHost::parse(&s);
    }

    #[test]
    fn host_parsing_round_trips_generated_hosts(
        name in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        region in "[a-z]{2}-[a-z]{3,10}(-[0-9])?",
        vpc: bool,
    ) {
        let host = format!("{name}-registry{}.{region}.cr.aliyuncs.com", if vpc { "-vpc" } else { "" });
        let parsed = RegistryHost::parse(&host).unwrap();
        prop_assert_eq!(parsed.instance.as_deref(), Some(name.as_str()));
        prop_assert_eq!(parsed.region, region);
    }

    #[test]
    fn docker_config_round_trips(entries in proptest::collection::btree_map("[a-z.:0-9-]{1,30}", ("\\PC{0,20}", "\\PC{0,40}"), 0..5)) {
        let mut c = DockerConfig::default();
        for (host, (u, p)) in &entries {
            c.insert(host.clone(), u.replace(':', ""), p.clone());
        }
        prop_assert_eq!(DockerConfig::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn docker_config_parse_never_panics(s in "\\PC{0,200}") {
        let _ = DockerConfig::parse(&s);
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
