//! The rule files in `rules/` against Prometheus' own tools: `promtool check
//! rules` accepts them, `promtool test rules` runs their unit tests
//! (`rules/tests/*.yml`), every alert has a test where it fires and one where
//! it does not, every recording rule is evaluated by a test, and every imd
//! series the rules use is one the analyzer publishes.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{analyzer_metric_names, repo_root, require_tool, run_capture};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    v
}

fn load(path: &PathBuf) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strs(p: &[PathBuf]) -> Vec<String> {
    p.iter().map(|p| p.display().to_string()).collect()
}

/// (alert names, recording rule names, every expr) of the rule files.
fn rules() -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    let (mut alerts, mut records, mut exprs) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for f in yaml_files("rules") {
        let doc = load(&f);
        for g in doc["groups"].as_sequence().expect("groups") {
            for r in g["rules"].as_sequence().expect("rules") {
                if let Some(a) = r["alert"].as_str() {
                    alerts.insert(a.to_string());
                }
                if let Some(a) = r["record"].as_str() {
                    records.insert(a.to_string());
                }
                exprs.push(r["expr"].as_str().expect("expr").to_string());
            }
        }
    }
    (alerts, records, exprs)
}

#[test]
fn promtool_check_rules_accepts_every_rule_file() {
    let promtool = require_tool("promtool");
    let files = strs(&yaml_files("rules"));
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = run_capture(&promtool, &args);
    assert!(ok, "promtool check rules failed:\n{out}");
    // No lint warning either (duplicate rules and the like).
    assert!(!out.contains("lint"), "{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let promtool = require_tool("promtool");
    let files = strs(&yaml_files("rules/tests"));
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = run_capture(&promtool, &args);
    assert!(ok, "promtool test rules failed:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing_and_every_record_is_evaluated() {
    let (alerts, records, _) = rules();
    let (mut firing, mut silent, mut evaluated) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for f in yaml_files("rules/tests") {
        let doc = load(&f);
        for t in doc["tests"].as_sequence().expect("tests") {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = a["alertname"].as_str().expect("alertname").to_string();
                let exp = a["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if exp == 0 {
                    silent.insert(name);
                } else {
                    // A firing case checks labels and the annotations.
                    for e in a["exp_alerts"].as_sequence().unwrap() {
                        assert!(
                            e["exp_annotations"]["summary"].as_str().is_some(),
                            "{}: {name} is expected without its annotations",
                            f.display()
                        );
                    }
                    firing.insert(name);
                }
            }
            for e in t["promql_expr_test"].as_sequence().into_iter().flatten() {
                evaluated.push(e["expr"].as_str().expect("expr").to_string());
            }
        }
    }
    let not_firing: Vec<_> = alerts.difference(&firing).collect();
    let not_silent: Vec<_> = alerts.difference(&silent).collect();
    assert!(
        not_firing.is_empty(),
        "alerts never tested firing: {not_firing:?}"
    );
    assert!(
        not_silent.is_empty(),
        "alerts never tested silent: {not_silent:?}"
    );
    let unknown: Vec<_> = firing.difference(&alerts).collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
    let untested: Vec<_> = records
        .iter()
        .filter(|r| !evaluated.iter().any(|e| e.contains(r.as_str())))
        .collect();
    assert!(
        untested.is_empty(),
        "recording rules no test evaluates: {untested:?}"
    );
}

#[test]
fn a_wrong_expectation_makes_promtool_fail() {
    // The unit tests compare annotations exactly: changing one expected
    // value must make them fail, so passing means something.
    let promtool = require_tool("promtool");
    let dir = common::tempdir();
    let src = repo_root().join("rules/tests/alerts_test.yml");
    let text = std::fs::read_to_string(&src).unwrap();
    assert!(text.contains("expected: \"1.25\""));
    let broken = text
        .replace("expected: \"1.25\"", "expected: \"1.5\"")
        .replace("../", &format!("{}/", repo_root().join("rules").display()));
    let f = dir.path().join("broken_test.yml");
    std::fs::write(&f, broken).unwrap();
    let (ok, out) = run_capture(&promtool, &["test", "rules", f.to_str().unwrap()]);
    assert!(!ok, "promtool accepted a wrong expectation:\n{out}");
    assert!(out.contains("expected=\"1.25\""), "{out}");
}

#[test]
fn the_rules_use_only_series_the_analyzer_publishes() {
    let known = analyzer_metric_names();
    let (_, _, exprs) = rules();
    // Names of series, not parts of recording rule names (`job:imd_x:avg`).
    let re = regex::Regex::new(r"(?:^|[^:\w])(imd_[a-z_]+)\b").unwrap();
    let mut used = BTreeSet::new();
    for e in &exprs {
        used.extend(re.captures_iter(e).map(|c| c[1].to_string()));
    }
    // The alert annotations look series up by name too.
    let text = std::fs::read_to_string(repo_root().join("rules/alerts.yml")).unwrap();
    used.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
    assert!(used.len() >= 10, "{used:?}");
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "series the analyzer does not publish: {unknown:?}"
    );
}
