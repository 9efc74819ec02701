//! The monitoring files in `scripts/` against a running relay (§12.2): every metric
//! the Grafana dashboard and the Prometheus alert rules query is one the relay
//! exports, and both files have the shape Grafana and Prometheus load.
//!
//! The scrape comes from a relay with built-in TLS, the one condition under which a
//! §12.2 series appears only sometimes (`relay_tls_certificate_expiry_timestamp_seconds`);
//! the federation series are exported with federation off too.

mod promql;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::ca::Ca;
use crate::common::*;
use crate::tls::tls_relay;

/// Series Prometheus writes itself for every scrape; the alert rules may use them.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn script(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample names of a scrape (`relay_message_duration_seconds_bucket`, not its
/// family's name).
fn sample_names(response: &str) -> BTreeSet<String> {
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    body.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// The sample names of a TLS relay's /metrics.
fn exported_names() -> BTreeSet<String> {
    let data = TempDir::new("monitoring");
    let certs = TempDir::new("monitoring-certs");
    Ca::new().leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[("RELAY_SHARDS", "2")]);
    let names = sample_names(&scrape_metrics(&relay));
    assert!(
        names.contains("relay_tls_certificate_expiry_timestamp_seconds"),
        "a TLS relay exports the expiry gauge: {names:?}"
    );
    names
}

/// Problems with one PromQL expression: brackets that do not balance, names the
/// relay (or Prometheus, when `allowed` has them) does not export.
fn check_expr(
    place: &str,
    expr: &str,
    exported: &BTreeSet<String>,
    allowed: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = promql::balanced(expr) {
        problems.push(format!("{place}: {e} in {expr:?}"));
    }
    match promql::metric_names(expr) {
        Err(e) => problems.push(format!("{place}: {e} in {expr:?}")),
        Ok(names) => {
            for name in names {
                if !exported.contains(&name) && !allowed.contains(&name.as_str()) {
                    problems.push(format!("{place}: {name} is not in /metrics ({expr:?})"));
                }
            }
        }
    }
    problems
}

#[test]
fn the_promql_lexer_finds_metric_names_and_unbalanced_brackets() {
    let cases: [(&str, &[&str]); 12] = [
        (
            r#"sum by (instance) (rate(relay_blobs_created_total{instance=~"$instance"}[$__rate_interval]))"#,
            &["relay_blobs_created_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
            &["x_bucket"],
        ),
        (
            "a / on(instance) group_left(shard) b offset 5m",
            &["a", "b"],
        ),
        ("(c - time()) / 86400 < 14", &["c"]),
        (r#"up{job="relay"} == 0"#, &["up"]),
        (r#"m{l="}]"} > bool n"#, &["m", "n"]),
        ("vector($storage_max_bytes)", &[]),
        ("# not_a_metric\nreal", &["real"]),
        ("SUM BY (instance) (x) AND y", &["x", "y"]),
        ("topk(3, x) without (a)", &["x"]),
        ("1e3 * x + 1e-3 * y + 0x1f * z", &["x", "y", "z"]),
        (
            r#"label_replace(x, "dst", "$1", "src", "(.*)") unless ignoring(z) w"#,
            &["x", "w"],
        ),
    ];
    for (expr, expected) in cases {
        assert_eq!(promql::metric_names(expr).unwrap(), expected, "{expr}");
        assert_eq!(promql::balanced(expr), Ok(()), "{expr}");
    }
    for unbalanced in [
        "rate(x[5m]",
        r#"x{a="b""#,
        "sum(x))",
        "sum(x]",
        r#"x{a="b}"#,
    ] {
        assert!(promql::balanced(unbalanced).is_err(), "{unbalanced}");
    }
    // The check reports a name the relay does not export.
    let exported = BTreeSet::from(["relay_shards".to_owned()]);
    let problems = check_expr("case", "relay_shards + relay_invented", &exported, &[]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("relay_invented"), "{problems:?}");

    for good in ["0", "0m", "10m", "1h30m", "2w", "500ms", "1y2w3d4h5m6s7ms"] {
        assert!(promql::is_duration(good), "{good}");
    }
    for bad in ["", "10", "5 m", "1m1h", "1.5h", "m", "10M", "-1m", "1mm"] {
        assert!(!promql::is_duration(bad), "{bad}");
    }
}

/// Every panel, the panels of collapsed rows included, with its place in the file.
fn walk_panels<'a>(panels: &'a [Value], at: &str, out: &mut Vec<(String, &'a Value)>) {
    for (index, panel) in panels.iter().enumerate() {
        let place = format!("{at}[{index}] {:?}", panel["title"].as_str().unwrap_or(""));
        if let Some(children) = panel["panels"].as_array() {
            walk_panels(children, &format!("{place}.panels"), out);
        }
        out.push((place, panel));
    }
}

/// Problems with the dashboard's variables: the Prometheus datasource, the instance
/// query, and the metric that query reads.
fn check_templating(dashboard: &Value, exported: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let vars = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problems.push(format!("no Prometheus datasource variable: {other:?}")),
    }
    match var("instance") {
        Some(v) if v["type"] == "query" => {
            let query = v["query"]["query"].as_str().or(v["query"].as_str());
            let metric = query
                .and_then(|q| q.strip_prefix("label_values("))
                .and_then(|q| q.split_once(','))
                .map(|(metric, _)| metric);
            match metric {
                Some(metric) => problems.extend(check_expr("$instance", metric, exported, &[])),
                None => problems.push(format!("$instance is not label_values(..): {query:?}")),
            }
        }
        other => problems.push(format!("no instance query variable: {other:?}")),
    }
    problems
}

#[test]
fn the_dashboard_queries_only_metrics_the_relay_exports() {
    let exported = exported_names();
    let dashboard: Value = serde_json::from_str(&script("grafana-dashboard.json")).unwrap();
    let mut problems = check_templating(&dashboard, &exported);
    let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
    if schema < 36 {
        problems.push(format!("schemaVersion {schema} is older than 36"));
    }
    let mut panels = Vec::new();
    walk_panels(
        dashboard["panels"].as_array().expect("panels"),
        "panels",
        &mut panels,
    );
    let mut ids = HashSet::new();
    let mut queried = BTreeSet::new();
    for (place, panel) in &panels {
        if !ids.insert(panel["id"].as_u64()) {
            problems.push(format!("{place}: id {} is not unique", panel["id"]));
        }
        if panel["type"] == "row" {
            let children = panel["panels"].as_array().map_or(0, Vec::len);
            if panel["collapsed"] != true && children > 0 {
                problems.push(format!("{place}: an open row holds its panels"));
            }
            continue;
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{place}: datasource is not ${{datasource}}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        let mut names = 0;
        for (index, target) in targets.iter().enumerate() {
            let place = format!("{place}.targets[{index}]");
            let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                problems.push(format!("{place}: no expr"));
                continue;
            };
            problems.extend(check_expr(&place, expr, &exported, &[]));
            let used = promql::metric_names(expr).unwrap_or_default();
            if !used.is_empty() && !expr.contains("$instance") {
                problems.push(format!("{place}: not filtered by $instance: {expr:?}"));
            }
            names += used.len();
            queried.extend(used);
        }
        if names == 0 {
            problems.push(format!("{place}: queries no metric"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        queried.contains("relay_tls_certificate_expiry_timestamp_seconds"),
        "{queried:?}"
    );
}

fn keys(hash: &yaml_rust2::yaml::Hash) -> Vec<&str> {
    hash.keys()
        .map(|k| k.as_str().unwrap_or("<not a string>"))
        .collect()
}

fn is_label_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Problems with one alerting rule.
fn check_rule(place: &str, rule: &Yaml, exported: &BTreeSet<String>) -> Vec<String> {
    const RULE_KEYS: [&str; 6] = [
        "alert",
        "expr",
        "for",
        "keep_firing_for",
        "labels",
        "annotations",
    ];
    let mut problems = Vec::new();
    let Some(hash) = rule.as_hash() else {
        return vec![format!("{place}: not a mapping")];
    };
    for key in keys(hash) {
        if !RULE_KEYS.contains(&key) {
            problems.push(format!("{place}: unknown key {key}"));
        }
    }
    if !rule["alert"].as_str().is_some_and(is_label_name) {
        problems.push(format!("{place}: alert {:?} is not a name", rule["alert"]));
    }
    match rule["expr"].as_str().filter(|e| !e.trim().is_empty()) {
        Some(expr) => {
            problems.extend(check_expr(place, expr, exported, &SYNTHETIC));
            if promql::metric_names(expr).is_ok_and(|n| n.is_empty()) {
                problems.push(format!("{place}: expr queries no metric"));
            }
        }
        None => problems.push(format!("{place}: no expr")),
    }
    for key in ["for", "keep_firing_for"] {
        let value = &rule[key];
        let required = key == "for";
        if (required || !value.is_badvalue()) && !value.as_str().is_some_and(promql::is_duration) {
            problems.push(format!("{place}: {key} {value:?} is not a duration"));
        }
    }
    let severity = rule["labels"]["severity"].as_str();
    if !matches!(severity, Some("warning" | "critical")) {
        problems.push(format!("{place}: severity {severity:?}"));
    }
    for part in ["labels", "annotations"] {
        let Some(hash) = rule[part].as_hash() else {
            problems.push(format!("{place}: no {part}"));
            continue;
        };
        for (key, value) in hash {
            let key = key.as_str().unwrap_or("");
            let text = value.as_str();
            if !is_label_name(key) || text.is_none() {
                problems.push(format!("{place}: {part}.{key:?} = {value:?}"));
            }
            let text = text.unwrap_or("");
            if text.matches("{{").count() != text.matches("}}").count() {
                problems.push(format!("{place}: {part}.{key} has unclosed {{{{"));
            }
        }
    }
    if rule["annotations"]["summary"]
        .as_str()
        .is_none_or(|s| s.trim().is_empty())
    {
        problems.push(format!("{place}: no annotations.summary"));
    }
    problems
}

#[test]
fn the_alert_rules_parse_and_use_only_metrics_the_relay_exports() {
    const GROUP_KEYS: [&str; 5] = ["name", "interval", "limit", "query_offset", "rules"];
    let exported = exported_names();
    let documents = YamlLoader::load_from_str(&script("prometheus-alerts.yml")).unwrap();
    assert_eq!(documents.len(), 1, "one YAML document");
    let root = &documents[0];
    assert_eq!(root.as_hash().map(keys), Some(vec!["groups"]));
    let groups = root["groups"].as_vec().expect("groups: a list");
    assert!(!groups.is_empty());
    let mut problems = Vec::new();
    let mut group_names = HashSet::new();
    let mut alerts = 0;
    for (g, group) in groups.iter().enumerate() {
        let name = group["name"].as_str().unwrap_or("");
        let at = format!("groups[{g}] {name:?}");
        for key in group.as_hash().map(keys).unwrap_or_default() {
            if !GROUP_KEYS.contains(&key) {
                problems.push(format!("{at}: unknown key {key}"));
            }
        }
        if name.is_empty() || !group_names.insert(name) {
            problems.push(format!("{at}: the name is empty or repeated"));
        }
        let interval = &group["interval"];
        if !interval.is_badvalue() && !interval.as_str().is_some_and(promql::is_duration) {
            problems.push(format!("{at}: interval {interval:?}"));
        }
        let rules = group["rules"].as_vec().cloned().unwrap_or_default();
        if rules.is_empty() {
            problems.push(format!("{at}: no rules"));
        }
        for (r, rule) in rules.iter().enumerate() {
            let alert = rule["alert"].as_str().unwrap_or("");
            let place = format!("{at}.rules[{r}] {alert:?}");
            problems.extend(check_rule(&place, rule, &exported));
            alerts += 1;
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(alerts > 0);
}
