//! The `acr-configuration` model: the original's documented examples, its documented mistakes,
//! every key, and random input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acr_auth_core::config::{ConfigErrors, FailurePolicy, HelperConfig, ParsedConfig, Selection};
use proptest::prelude::*;

fn parse(pairs: &[(&str, &str)]) -> Result<ParsedConfig, ConfigErrors> {
    HelperConfig::from_configmap(pairs.iter().map(|(k, v)| (*k, *v)))
}

fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
    parse(pairs)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn no_keys_means_the_documented_defaults() {
    let c = parse(&[]).unwrap().config;
    assert_eq!(c.service_accounts, names(&["default"]));
    assert_eq!(c.watch_namespaces, names(&["default"]));
    assert_eq!(c.expiring_threshold, Duration::from_secs(900));
    assert!(c.registries.is_empty());
    assert_eq!(c.secret_name, "acr-credential-secret-aggregation");
    assert!(!c.webhook.enabled && !c.rrsa_enabled);
}

/// The shape of the original's documented ConfigMap.
const DOCUMENTED: &str = r#"- instanceId: ""
  regionId: "cn-beijing"
- instanceId: "cri-xxx"
  regionId: "cn-hangzhou"
  domains: "xx.cn-hangzhou.cr.aliyuncs.com,yy.cn-hangzhou.cr.aliyuncs.com"
  assumeRoleARN: "acs:ram::123456:role/cross-account"
  expireDuration: 3600
"#;

#[test]
fn the_documented_example_parses() {
    let parsed = parse(&[
        ("service-account", "default"),
        ("watch-namespace", "all"),
        ("expiring-threshold", "15m"),
        ("notify-email", "c*@example.com"),
        ("acr-registry-info", DOCUMENTED),
        ("rrsa", "enable: false\n"),
        (
            "webhook-configuration",
            "enable: true\nfailure-policy: Ignore\ntimeout-seconds: 10\n",
        ),
    ])
    .unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let c = parsed.config;
    assert_eq!(c.watch_namespaces, Selection::All);
    assert_eq!(c.registries.len(), 2);
    assert!(!c.registries[0].is_enterprise());
    assert_eq!(c.registries[0].region_id.as_deref(), Some("cn-beijing"));
    let ee = &c.registries[1];
    assert_eq!(ee.instance_id.as_deref(), Some("cri-xxx"));
    assert_eq!(
        ee.domains,
        [
            "xx.cn-hangzhou.cr.aliyuncs.com",
            "yy.cn-hangzhou.cr.aliyuncs.com"
        ]
    );
    assert_eq!(
        ee.assume_role_arn.as_deref(),
        Some("acs:ram::123456:role/cross-account")
    );
    assert_eq!(ee.expire_duration, Duration::from_secs(3600));
    assert!(c.webhook.enabled);
    assert_eq!(
        (c.webhook.failure_policy, c.webhook.timeout_seconds),
        (FailurePolicy::Ignore, 10)
    );
}

#[test]
fn json_array_and_yaml_list_variants_are_the_same_config() {
    let json = r#"[{"instanceId": "", "regionId": "cn-beijing"},
                   {"instanceId": "cri-xxx", "regionId": "cn-hangzhou",
                    "domains": ["xx.cn-hangzhou.cr.aliyuncs.com", "yy.cn-hangzhou.cr.aliyuncs.com"],
                    "assumeRoleARN": "acs:ram::123456:role/cross-account", "expireDuration": "3600"}]"#;
    let from_json = parse(&[("acr-registry-info", json)]).unwrap().config;
    let from_yaml = parse(&[("acr-registry-info", DOCUMENTED)]).unwrap().config;
    assert_eq!(from_json, from_yaml);
    let list = "- instanceId: cri-xxx\n  domains:\n    - a.example.com\n    - b.example.com\n";
    let c = parse(&[("acr-registry-info", list)]).unwrap().config;
    assert_eq!(c.registries[0].domains, ["a.example.com", "b.example.com"]);
}

#[test]
fn keywords_are_case_insensitive_and_names_are_not() {
    let c = parse(&[
        ("watch-namespace", "ALL"),
        ("service-account", "Default, builder"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.watch_namespaces, Selection::All);
    assert_eq!(c.service_accounts, names(&["default", "builder"]));
    let c = parse(&[
        ("service-account", "*"),
        ("watch-namespace", " dev ,prod,dev"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.service_accounts, Selection::All);
    assert_eq!(c.watch_namespaces, names(&["dev", "prod"]));
    let e = errors(&[("watch-namespace", "Dev")]);
    assert!(
        e[0].starts_with("watch-namespace: \"Dev\" is not a valid Kubernetes name"),
        "{e:?}"
    );
}

#[test]
fn documented_mistake_two_quoted_domains() {
    let yaml = "- instanceId: \"cri-xxx\"\n  domains: \"a.com\",\"b.com\"\n";
    let e = errors(&[("acr-registry-info", yaml)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("acr-registry-info (line 2, column "),
        "{}",
        e[0]
    );
    assert!(e[0].contains("not valid YAML"), "{}", e[0]);
    assert!(e[0].contains("domains: \"a.com,b.com\""), "{}", e[0]);
}

#[test]
fn documented_mistake_misindented_item() {
    let yaml = "- instanceId: \"cri-xxx\"\n regionId: \"cn-hangzhou\"\n";
    let e = errors(&[("acr-registry-info", yaml)]);
    assert!(
        e[0].starts_with("acr-registry-info (line 2, column "),
        "{e:?}"
    );
    assert!(e[0].contains("indentation"), "{e:?}");
    // Fields at the level of the dash form a second mapping, not the item's fields.
    let yaml = "-\ninstanceId: \"cri-xxx\"\n";
    assert!(!errors(&[("acr-registry-info", yaml)]).is_empty());
    let single = "instanceId: \"cri-xxx\"\nregionId: cn-hangzhou\n";
    let e = errors(&[("acr-registry-info", single)]);
    assert!(
        e[0].contains(
            "expected a list of items, found a single mapping; start each item with \"- \""
        ),
        "{e:?}"
    );
}

#[test]
fn documented_mistake_unquoted_number() {
    let yaml = "- instanceId: 123456\n  regionId: cn-hangzhou\n";
    let e = errors(&[("acr-registry-info", yaml)]);
    assert_eq!(
        e,
        ["acr-registry-info[0].instanceId (line 1, column 15): expected a string, found the number 123456 (YAML reads it unquoted as a number); quote it: instanceId: \"123456\""]
    );
    let e = errors(&[(
        "acr-registry-info",
        "- instanceId: cri-1\n  regionId: true\n",
    )]);
    assert!(
        e[0].contains(
            "[0].regionId (line 2, column 13): expected a string, found the boolean true"
        ),
        "{e:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let e = errors(&[
        ("expiring-threshold", "15"),
        ("watch-namespace", ""),
        (
            "acr-registry-info",
            "- instanceId: abc\n  expireDuration: 60\n- regionId: [1]\n",
        ),
        (
            "webhook-configuration",
            "enable: maybe\nfailure-policy: Sometimes\ntimeout-seconds: 99\n",
        ),
        ("secret-name", "Not_A_Name"),
    ]);
    let joined = e.join("\n");
    for part in [
        "expiring-threshold: \"15\": missing unit after 15 (use s, m or h, e.g. 15m)",
        "watch-namespace: is empty",
        "acr-registry-info[0].instanceId (line 1, column 15): \"abc\" is not an Enterprise Edition instance id",
        "acr-registry-info[0].expireDuration (line 2, column 19): expected a whole number of seconds from 900 to 43200, found the number 60",
        "acr-registry-info[1].regionId (line 3, column 13): expected a string, found a list",
        "webhook-configuration.enable (line 1, column 9): expected true or false",
        "webhook-configuration.failure-policy (line 2, column 17): expected Ignore or Fail",
        "webhook-configuration.timeout-seconds (line 3, column 18): expected a whole number of seconds from 1 to 30",
        "secret-name: \"Not_A_Name\" is not a valid Secret name",
    ] {
        assert!(joined.contains(part), "missing {part:?} in\n{joined}");
    }
    let display = parse(&[("expiring-threshold", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        display.starts_with(
            "invalid configuration (1 error):\n  expiring-threshold: must be longer than 0"
        ),
        "{display}"
    );
}

#[test]
fn warnings_for_unknown_and_ignored_settings() {
    let parsed = parse(&[
        ("acr-api-version", "2016-06-07"),
        ("colour", "blue"),
        ("acr-registry-info", "- instanceID: cri-1\n  customAccessKey: LTAIx\n  customAccessKeySecret: sk-plain-text\n"),
        ("acr-registry", "registry.cn-hangzhou.aliyuncs.com"),
    ])
    .unwrap();
    let w = parsed.warnings.join("\n");
    for part in [
        "acr-api-version: \"2016-06-07\" has no effect",
        "unknown key \"colour\" ignored",
        "acr-registry-info[0]: unknown field \"instanceID\" ignored (did you mean instanceId?)",
        "customAccessKeySecret is stored in plain text",
        "acr-registry: ignored because acr-registry-info is set",
    ] {
        assert!(w.contains(part), "missing {part:?} in\n{w}");
    }
    let item = &parsed.config.registries[0];
    assert!(!format!("{item:?}").contains("sk-plain-text"));
    assert_eq!(
        item.custom_access_key_secret.as_ref().unwrap().expose(),
        "sk-plain-text"
    );
}

#[test]
fn rrsa_exclusions_legacy_hosts_and_extensions() {
    let c = parse(&[
        ("rrsa", "enable: True\n"),
        ("exclude-namespace", "kube-*, istio-system"),
        ("secret-name", "my-pull-secret"),
        ("acr-registry", "registry.cn-hangzhou.aliyuncs.com, registry-vpc.*.aliyuncs.com"),
        ("acr-registry-info", "- instanceId: cri-1\n  rrsaRoleARN: acs:ram::1:role/r\n  rrsaOIDCProviderRoleARN: acs:ram::1:oidc-provider/p\n  customDomains: reg.example.com\n"),
    ])
    .unwrap()
    .config;
    assert!(c.rrsa_enabled);
    assert_eq!(c.exclude_namespaces, ["kube-*", "istio-system"]);
    assert_eq!(c.secret_name, "my-pull-secret");
    assert_eq!(c.legacy_registries.len(), 2);
    assert_eq!(c.registries[0].custom_domains, ["reg.example.com"]);
    let e = errors(&[(
        "acr-registry-info",
        "- instanceId: cri-1\n  rrsaRoleARN: acs:ram::1:role/r\n",
    )]);
    assert!(
        e[0].contains("rrsaRoleARN and rrsaOIDCProviderRoleARN go together"),
        "{e:?}"
    );
    let e = errors(&[("acr-registry-info", "- assumeRoleARN: my-role\n")]);
    assert!(e[0].contains("is not a RAM role ARN"), "{e:?}");
}

#[test]
fn legacy_hosts_are_checked_against_the_registry_host_grammar_when_honoured() {
    let ok = parse(&[(
        "acr-registry",
        "acme-registry.*.cr.aliyuncs.com, registry-vpc.cn-beijing.aliyuncs.com",
    )])
    .unwrap()
    .config;
    assert_eq!(
        ok.legacy_registries,
        [
            "acme-registry.*.cr.aliyuncs.com",
            "registry-vpc.cn-beijing.aliyuncs.com"
        ]
    );
    let e = errors(&[(
        "acr-registry",
        "registry.cn-hangzhou.aliyuncs.com, docker.io, acme.*.cr.aliyuncs.com",
    )]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "acr-registry[1]: \"docker.io\" is not an ACR registry host: not under aliyuncs.com"
        ),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("acr-registry[2]: \"acme.*.cr.aliyuncs.com\" is not an ACR registry host: an Enterprise Edition host is <instance>-registry[-vpc]"),
        "{e:?}"
    );
    // Ignored (with a warning) when acr-registry-info is set, so not checked either.
    let ignored = parse(&[
        ("acr-registry", "docker.io"),
        ("acr-registry-info", "- instanceId: \"\"\n"),
    ])
    .unwrap();
    assert_eq!(
        ignored.warnings,
        ["acr-registry: ignored because acr-registry-info is set"]
    );
}

#[test]
fn managed_edition_json_parameters() {
    let json = r#"{"AcrInstanceInfo": [{"instanceId": "cri-managed", "regionId": "cn-shanghai"}],
                   "watchNamespace": "ns1,ns2", "serviceAccount": ["default", "ci"],
                   "expiringThreshold": "30m", "notifyEmail": "", "enableRRSA": true}"#;
    let c = HelperConfig::from_managed_json(json).unwrap().config;
    assert_eq!(c.registries[0].instance_id.as_deref(), Some("cri-managed"));
    assert_eq!(c.watch_namespaces, names(&["ns1", "ns2"]));
    assert_eq!(c.service_accounts, names(&["default", "ci"]));
    assert_eq!(c.expiring_threshold, Duration::from_secs(1800));
    assert!(c.rrsa_enabled);
    // AcrInstanceInfo as a JSON string holding the list.
    let as_string = r#"{"AcrInstanceInfo": "[{\"instanceId\": \"cri-managed\"}]"}"#;
    assert_eq!(
        HelperConfig::from_managed_json(as_string)
            .unwrap()
            .config
            .registries
            .len(),
        1
    );
    let e = HelperConfig::from_managed_json(
        r#"{"enableRRSA": "perhaps", "AcrInstanceInfo": [{"instanceId": 7}]}"#,
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("enableRRSA (line 1, column 16): expected true or false"),
        "{text}"
    );
    assert!(text.contains("AcrInstanceInfo[0].instanceId"), "{text}");
    assert!(HelperConfig::from_managed_json("[1]").is_err());
}

#[test]
fn aliases_and_deep_nesting_are_refused_quickly() {
    // A "billion laughs" document: refused at the first alias, not expanded.
    let mut bomb = String::from(
        "- &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 0..9u8 {
        let prev = (b'a' + i) as char;
        let name = (b'b' + i) as char;
        bomb.push_str(&format!(
            "- &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let started = Instant::now();
    let e = errors(&[("acr-registry-info", &bomb)]);
    assert!(e[0].contains("aliases"), "{e:?}");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let e = errors(&[("acr-registry-info", &deep)]);
    assert!(e[0].contains("nesting deeper than 32 levels"), "{e:?}");
    let wide = format!("[{}]", vec!["1"; 200_000].join(","));
    let e = errors(&[("acr-registry-info", &wide)]);
    assert!(e[0].contains("more than 100000 YAML nodes"), "{e:?}");
    // A generous bound: this is a budget check, not a benchmark.
    assert!(started.elapsed() < Duration::from_secs(10));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_values_never_panic(key in prop::sample::select(vec![
        "acr-registry-info", "watch-namespace", "service-account", "expiring-threshold",
        "rrsa", "webhook-configuration", "secret-name", "acr-registry", "exclude-namespace",
    ]), value in "\\PC{0,200}") {
        let _ = parse(&[(key, value.as_str())]);
    }

    #[test]
    fn mutated_documented_config_never_panics(pos in any::<prop::sample::Index>(), byte in 0x20u8..0x7f, cut in any::<prop::sample::Index>()) {
        let mut bytes = DOCUMENTED.as_bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let text = String::from_utf8(bytes).unwrap();
        let _ = parse(&[("acr-registry-info", text.as_str())]);
        let _ = parse(&[("acr-registry-info", &DOCUMENTED[..cut.index(DOCUMENTED.len())])]);
        let _ = HelperConfig::from_managed_json(&text);
    }

    #[test]
    fn yaml_structure_soup_never_panics(parts in proptest::collection::vec(prop::sample::select(vec![
        "- ", "  ", "\n", ":", "instanceId", "\"", "'", "[", "]", "{", "}", ",", "&a ", "*a", "cri-1", "#", "|", ">", "---", "? ",
    ]), 0..60)) {
        let text: String = parts.concat();
        let _ = parse(&[("acr-registry-info", text.as_str())]);
    }
}

#[test]
fn from_a_btreemap() {
    let data = BTreeMap::from([("watch-namespace".to_string(), "a".to_string())]);
    assert!(HelperConfig::from_configmap(&data).is_ok());
}

/// A selection of these names, in this order.
fn names(n: &[&str]) -> Selection {
    Selection::Names(n.iter().map(|s| (*s).to_owned()).collect())
}

/// Repeated names are kept once, where they first appear (also for the `default` keyword in
/// another case), and every listed name is found; with 90,000 names (a linear pass: this took
/// 46 s with a quadratic dedup; `benches/benches/core.rs` measures the growth).
#[test]
fn repeated_names_are_kept_once_in_first_given_order() {
    let parsed = HelperConfig::from_configmap(&BTreeMap::from([
        (
            "watch-namespace".to_owned(),
            "prod, dev,prod,Default, ci ,dev,default".to_owned(),
        ),
        ("service-account".to_owned(), "b,a,b,a,c".to_owned()),
    ]))
    .unwrap();
    assert_eq!(
        parsed.config.watch_namespaces,
        names(&["prod", "dev", "default", "ci"])
    );
    assert_eq!(parsed.config.service_accounts, names(&["b", "a", "c"]));

    let many: Vec<String> = (0..90_000).map(|i| format!("ns-{i}")).collect();
    let text = format!("{},{}", many.join(","), many[..10].join(","));
    let parsed =
        HelperConfig::from_configmap(&BTreeMap::from([("watch-namespace".to_owned(), text)]))
            .unwrap();
    let Selection::Names(got) = &parsed.config.watch_namespaces else {
        panic!("not names");
    };
    assert_eq!(got.len(), 90_000);
    assert_eq!(got.as_slice(), many.as_slice());
    assert!(parsed.config.watch_namespaces.contains("ns-89999"));
    assert!(!parsed.config.watch_namespaces.contains("ns-90000"));
}
