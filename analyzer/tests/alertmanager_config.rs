//! `alertmanager/alertmanager.yml` and its templates against Alertmanager's
//! own tools and a real Alertmanager (0.25, Debian's):
//! - `amtool check-config` accepts it;
//! - labelled example alerts go through `amtool config routes test
//!   --verify.receivers` and reach the receiver each one names, and every
//!   receiver is reached by one of them;
//! - `amtool template render` renders every template the receivers use, and
//!   imd's alerts come out with value, expected value, bounds and a link to
//!   a dashboard that exists;
//! - a real Alertmanager loads the file (`/-/ready`, `/api/v2/status`), and,
//!   with the receivers emptied so that nothing leaves the machine, applies
//!   the inhibition rules to alerts posted to it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Proc, free_port, http_get, http_post, repo_root, require_tool, run_capture, spawn_alertmanager,
    tempdir,
};

fn config() -> PathBuf {
    repo_root().join("alertmanager/alertmanager.yml")
}

fn config_yaml() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(config()).unwrap()).unwrap()
}

#[test]
fn amtool_check_config_accepts_it() {
    let amtool = require_tool("amtool");
    let (ok, out) = run_capture(&amtool, &["check-config", config().to_str().unwrap()]);
    assert!(ok, "amtool check-config failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(out.contains("5 inhibit rules"), "{out}");
    assert!(out.contains("1 templates"), "{out}");
}

/// Example alerts (labels) and the receivers they must reach, in order.
const ROUTES: &[(&str, &str)] = &[
    // Anomalies, from rules/alerts.yml or from imd-analyzer itself.
    (
        "alertname=ImdAnomalyDetected severity=warning job=node instance=h1:9100 query=load1",
        "slack-ops",
    ),
    (
        "alertname=ImdAnomalyDetected severity=critical job=node instance=h1:9100 query=load1",
        "pagerduty-oncall,sms-oncall",
    ),
    (
        "alertname=ImdAnomaly severity=warning source=imd metric=node_load1 instance=h1:9100",
        "slack-ops",
    ),
    // Predicted breaches.
    (
        "alertname=ImdDiskFullPredicted severity=critical instance=h1:9100 mountpoint=/",
        "pagerduty-oncall,sms-oncall",
    ),
    (
        "alertname=ImdMemoryMayRunOut severity=warning instance=h1:9100",
        "slack-ops",
    ),
    // A host down pages.
    (
        "alertname=HostDown severity=critical job=node instance=h1:9100",
        "pagerduty-oncall,sms-oncall",
    ),
    // A team with its own receivers.
    (
        "alertname=ImdAnomalyDetected severity=warning team=database instance=db1:9100",
        "slack-database",
    ),
    (
        "alertname=ImdDiskFullPredicted severity=critical team=database instance=db1:9100",
        "opsgenie-database",
    ),
    // imd's own health: the webhook, and paging when critical.
    (
        "alertname=ImdAnalyzerDown severity=critical component=imd job=imd-analyzer instance=a:9110",
        "webhook-imd,pagerduty-oncall,sms-oncall",
    ),
    (
        "alertname=ImdRemoteReadFailing severity=warning component=imd instance=a:9110",
        "webhook-imd",
    ),
    (
        "alertname=ImdAnalyzerIdle severity=info component=imd instance=a:9110",
        "webhook-imd",
    ),
    // Escalation levels of imd-analyzer's policies (README "Acknowledgement
    // and escalation"): primary by e-mail, then secondary with an SMS, then
    // the manager; ahead of the severity routes.
    (
        "alertname=LoadAnomaly severity=critical instance=h1:9100 query=load escalation_level=0",
        "primary-oncall-email",
    ),
    (
        "alertname=LoadAnomaly severity=critical instance=h1:9100 query=load escalation_level=1 escalation=secondary notify=sms",
        "secondary-oncall-email,sms-secondary",
    ),
    (
        "alertname=LoadAnomaly severity=critical instance=h1:9100 query=load escalation_level=2 escalation=manager",
        "manager-email",
    ),
    (
        "alertname=LoadAnomaly severity=critical instance=h1:9100 escalation_level=12",
        "manager-email",
    ),
    // Anything else: e-mail.
    (
        "alertname=ImdAnalyzerIdleElsewhere severity=info instance=x:1",
        "email-ops",
    ),
    ("alertname=NoSeverity instance=x:1", "email-ops"),
];

fn route_test(amtool: &Path, labels: &str, receivers: &str) -> (bool, String) {
    let cfg = format!("--config.file={}", config().display());
    let verify = format!("--verify.receivers={receivers}");
    let mut args = vec!["config", "routes", "test", cfg.as_str(), verify.as_str()];
    args.extend(labels.split(' '));
    run_capture(amtool, &args)
}

#[test]
fn example_alerts_reach_their_receivers() {
    let amtool = require_tool("amtool");
    for (labels, receivers) in ROUTES {
        let (ok, out) = route_test(&amtool, labels, receivers);
        assert!(ok, "{labels}: expected {receivers}:\n{out}");
        let got = out
            .lines()
            .find(|l| !l.starts_with("Warning:") && !l.trim().is_empty())
            .unwrap_or("");
        assert_eq!(got.trim(), *receivers, "{labels}:\n{out}");
    }
    // A wrong expectation fails, so the check above means something.
    let (ok, out) = route_test(&amtool, ROUTES[0].0, "email-ops");
    assert!(!ok, "amtool accepted a wrong receiver:\n{out}");

    // Every receiver of the file is reached by one of the examples.
    let reached: BTreeSet<&str> = ROUTES.iter().flat_map(|(_, r)| r.split(',')).collect();
    let doc = config_yaml();
    for r in doc["receivers"].as_sequence().unwrap() {
        let name = r["name"].as_str().unwrap();
        assert!(reached.contains(name), "no example reaches receiver {name}");
    }
}

#[test]
fn every_notifier_kind_users_asked_for_is_configured() {
    let doc = config_yaml();
    let kinds: BTreeSet<String> = doc["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_mapping().unwrap().keys())
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    for k in [
        "email_configs",
        "slack_configs",
        "pagerduty_configs",
        "opsgenie_configs",
        "webhook_configs",
    ] {
        assert!(kinds.contains(k), "no receiver uses {k}: {kinds:?}");
    }
    // SMS goes through imd's bridge, to the recipient lists its example
    // configuration has.
    let text = std::fs::read_to_string(config()).unwrap();
    let bridge = imd_analyzer::alert::sms::SmsBridgeConfig::load(
        &repo_root().join("examples/single-host/sms-bridge.yml"),
    )
    .unwrap();
    for list in ["oncall", "secondary"] {
        assert!(text.contains(&format!("http://imd-sms-bridge:9111/webhook/{list}\n")));
        assert!(bridge.recipients.contains_key(list), "no list {list}");
    }
    // No secret in the file: every credential is read from a file.
    for key in [
        "smtp_auth_password:",
        "api_url:",
        "routing_key:",
        "api_key:",
        "credentials:",
    ] {
        assert!(
            !text.contains(&format!(" {key}")),
            "{key} written in the file"
        );
    }
}

/// Alert data as Alertmanager hands it to templates: an analyzer anomaly,
/// a predicted breach from the rules, and a resolved health alert.
const TEMPLATE_DATA: &str = r#"{
  "receiver": "slack-ops", "status": "firing", "externalURL": "http://am.example.org:9093",
  "groupLabels": {"alertname": "ImdAnomalyDetected"},
  "commonLabels": {"alertname": "ImdAnomalyDetected", "instance": "h1:9100", "query": "load1"},
  "commonAnnotations": {"value": "4.5", "expected": "1.25", "lower": "0.75", "upper": "1.75"},
  "alerts": [
    {"status": "firing",
     "labels": {"alertname": "ImdAnomalyDetected", "severity": "warning", "job": "node", "instance": "h1:9100", "query": "load1", "model": "mad"},
     "annotations": {"summary": "load1 on h1:9100 is unusual", "description": "The anomaly score has stayed at or above 0.99.",
                     "value": "4.5", "expected": "1.25", "lower": "0.75", "upper": "1.75", "anomaly_score": "0.995"},
     "startsAt": "2025-01-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph", "fingerprint": "a1"},
    {"status": "firing",
     "labels": {"alertname": "ImdDiskFullPredicted", "severity": "critical", "job": "node", "instance": "h2:9100", "mountpoint": "/", "query": "filesystem_avail"},
     "annotations": {"summary": "/ on h2:9100 is forecast to be full in 2h 0m 0s", "breach_in": "2h 0m 0s",
                     "value": "2G", "expected": "2G", "lower": "1.9G", "upper": "2.1G", "anomaly_score": "0.250"},
     "startsAt": "2025-01-01T10:05:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "a2"},
    {"status": "resolved",
     "labels": {"alertname": "ImdAnalyzerStale", "severity": "warning", "component": "imd", "job": "imd-analyzer", "instance": "a:9110"},
     "annotations": {"summary": "imd-analyzer a:9110 has not completed a clean cycle for 12m"},
     "startsAt": "2025-01-01T09:00:00Z", "endsAt": "2025-01-01T09:30:00Z", "generatorURL": "", "fingerprint": "a3"}
  ]
}"#;

fn render(dir: &Path, text: &str, kind: &str) -> (bool, String) {
    let amtool = require_tool("amtool");
    let data = dir.join("data.json");
    std::fs::write(&data, TEMPLATE_DATA).unwrap();
    let glob = format!(
        "--template.glob={}",
        repo_root().join("alertmanager/templates/*.tmpl").display()
    );
    let data = format!("--template.data={}", data.display());
    let text = format!("--template.text={text}");
    let kind = format!("--template.type={kind}");
    run_capture(&amtool, &["template", "render", &glob, &data, &text, &kind])
}

#[test]
fn templates_show_value_expected_bounds_and_a_dashboard_link() {
    let dir = tempdir();
    let (ok, text) = render(dir.path(), r#"{{ template "imd.text" . }}"#, "text");
    assert!(ok, "{text}");
    for want in [
        "Firing:",
        "* load1 on h1:9100 is unusual",
        "value 4.5, expected 1.25 (between 0.75 and 1.75), anomaly score 0.995",
        "dashboard: http://localhost:3000/d/imd-anomaly-explorer?var-job=node&var-instance=h1%3A9100&var-query=load1",
        "value 2G, expected 2G (between 1.9G and 2.1G), anomaly score 0.250, threshold crossed in 2h 0m 0s",
        "dashboard: http://localhost:3000/d/imd-forecasts?var-job=node&var-instance=h2%3A9100&var-query=filesystem_avail",
        "Resolved:",
        "(resolved)",
        "dashboard: http://localhost:3000/d/imd-health?var-job=imd-analyzer&var-instance=a%3A9110",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let (ok, title) = render(dir.path(), r#"{{ template "imd.title" . }}"#, "text");
    assert!(ok, "{title}");
    assert_eq!(
        title.trim(),
        "[FIRING:2] ImdAnomalyDetected on h1:9100 (load1)"
    );
    let (ok, short) = render(dir.path(), r#"{{ template "imd.short" . }}"#, "text");
    assert!(ok, "{short}");
    assert_eq!(
        short.trim(),
        "load1 on h1:9100 is unusual (3 alerts in this group)"
    );
    let (ok, html) = render(dir.path(), r#"{{ template "imd.email.html" . }}"#, "html");
    assert!(ok, "{html}");
    for want in [
        "<td>4.5</td>",
        "<td>1.25</td>",
        "<td>0.75 … 1.75</td>",
        "<td>0.995</td>",
        "href=\"http://localhost:3000/d/imd-anomaly-explorer?var-job=node&var-instance=h1%3A9100&var-query=load1\"",
    ] {
        assert!(html.contains(want), "missing {want:?} in:\n{html}");
    }
    // An undefined template is an error, so the renders above are real.
    let (ok, _) = render(dir.path(), r#"{{ template "imd.nope" . }}"#, "text");
    assert!(!ok);
}

/// Every string of the receivers that holds a template.
fn receiver_templates(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml_ng::Value::String(s) if s.contains("{{") => out.push(s.clone()),
        serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|x| receiver_templates(x, out)),
        serde_yaml_ng::Value::Mapping(m) => m.values().for_each(|x| receiver_templates(x, out)),
        _ => {}
    }
}

#[test]
fn every_template_the_receivers_use_renders() {
    let dir = tempdir();
    let mut texts = Vec::new();
    receiver_templates(&config_yaml()["receivers"], &mut texts);
    assert!(texts.len() >= 15, "{texts:?}");
    for t in texts {
        let (ok, out) = render(dir.path(), &t, "text");
        assert!(ok, "{t}:\n{out}");
        assert!(!out.trim().is_empty(), "{t} renders empty");
        assert!(!out.contains("<no value>"), "{t}:\n{out}");
    }
}

#[test]
fn dashboard_links_point_at_dashboards_that_exist() {
    // The template links to /d/<uid>?var-job=..&var-instance=..&var-query=..;
    // those dashboards exist with those variables.
    let tmpl =
        std::fs::read_to_string(repo_root().join("alertmanager/templates/imd.tmpl")).unwrap();
    let mut uids = BTreeSet::new();
    for d in std::fs::read_dir(repo_root().join("grafana/dashboards")).unwrap() {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.unwrap().path()).unwrap()).unwrap();
        let vars: BTreeSet<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        uids.insert((
            d["uid"].as_str().unwrap().to_string(),
            vars.contains("query"),
        ));
        assert!(
            vars.contains("job") || vars.contains("analyzer_job"),
            "{vars:?}"
        );
    }
    for uid in ["imd-anomaly-explorer", "imd-forecasts", "imd-health"] {
        assert!(tmpl.contains(uid), "{uid} not linked");
        assert!(
            uids.iter().any(|(u, _)| u == uid),
            "no dashboard {uid}: {uids:?}"
        );
    }
}

/// `POST path` with a JSON body on 127.0.0.1:port; the status code.
fn post_json(port: u16, path: &str, body: &str) -> u16 {
    http_post(port, path, &[("content-type", "application/json")], body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .status
}

/// Starts Alertmanager with the config file `config` (used where it is, so
/// that its relative template paths resolve), its data and logs in `dir`.
fn start_alertmanager(config: &Path, dir: &Path) -> (Proc, u16) {
    let port = free_port();
    (
        spawn_alertmanager("alertmanager", dir, config, port, &[]),
        port,
    )
}

#[test]
fn a_real_alertmanager_loads_the_configuration() {
    let dir = tempdir();
    let (_am, port) = start_alertmanager(&config(), dir.path());
    let (status, body) = http_get(port, "/api/v2/status").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let original = v["config"]["original"].as_str().unwrap();
    // What it loaded is this file: its receivers and inhibition rules.
    for want in [
        "sms-oncall",
        "opsgenie-database",
        "imd-sms-bridge:9111/webhook/oncall",
        "imd-sms-bridge:9111/webhook/secondary",
        "HostDown",
    ] {
        assert!(original.contains(want), "{want} not in the loaded config");
    }
    let (status, body) = http_get(port, "/api/v2/receivers").unwrap();
    assert_eq!(status, 200);
    let receivers: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    // Seven, plus four for the escalation levels.
    assert_eq!(receivers.len(), 11, "{body}");
}

#[test]
fn inhibition_rules_work_in_a_real_alertmanager() {
    // The real routes and inhibition rules with receivers that send nothing,
    // so that no notification leaves the machine.
    let dir = tempdir();
    let mut doc = config_yaml();
    let names: Vec<serde_yaml_ng::Value> = doc["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            let mut m = serde_yaml_ng::Mapping::new();
            m.insert("name".into(), r["name"].clone());
            serde_yaml_ng::Value::Mapping(m)
        })
        .collect();
    doc["receivers"] = serde_yaml_ng::Value::Sequence(names);
    doc["templates"] = serde_yaml_ng::Value::Sequence(vec![
        repo_root()
            .join("alertmanager/templates/*.tmpl")
            .display()
            .to_string()
            .into(),
    ]);
    let cfg = dir.path().join("alertmanager.yml");
    std::fs::write(&cfg, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let (_am, port) = start_alertmanager(&cfg, dir.path());

    let alert = |labels: &str| {
        format!(
            r#"{{"labels": {{{labels}}}, "annotations": {{"summary": "test"}}, "startsAt": "{}"}}"#,
            "2020-01-01T00:00:00Z"
        )
    };
    let alerts = [
        // h1 is down: its anomalies are silenced, h2's are not.
        alert(r#""alertname": "HostDown", "severity": "critical", "instance": "h1:9100""#),
        alert(
            r#""alertname": "ImdAnomalyDetected", "severity": "warning", "instance": "h1:9100", "query": "load1""#,
        ),
        alert(
            r#""alertname": "ImdAnomalyDetected", "severity": "warning", "instance": "h2:9100", "query": "load1""#,
        ),
        // On h3 the critical anomaly silences the warning of the same alert.
        alert(
            r#""alertname": "ImdAnomalyDetected", "severity": "critical", "instance": "h3:9100", "query": "cpu_idle""#,
        ),
        alert(
            r#""alertname": "ImdAnomalyDetected", "severity": "warning", "instance": "h3:9100", "query": "load1""#,
        ),
        // The predicted disk full silences "may fill" of the same mount point only.
        alert(
            r#""alertname": "ImdDiskFullPredicted", "severity": "critical", "instance": "h4:9100", "mountpoint": "/""#,
        ),
        alert(
            r#""alertname": "ImdDiskMayFill", "severity": "warning", "instance": "h4:9100", "mountpoint": "/""#,
        ),
        alert(
            r#""alertname": "ImdDiskMayFill", "severity": "warning", "instance": "h4:9100", "mountpoint": "/data""#,
        ),
        // An analyzer down silences its other health alerts.
        alert(
            r#""alertname": "ImdAnalyzerDown", "severity": "critical", "component": "imd", "instance": "a:9110""#,
        ),
        alert(
            r#""alertname": "ImdAnalyzerStale", "severity": "warning", "component": "imd", "instance": "a:9110""#,
        ),
    ];
    let body = format!("[{}]", alerts.join(","));
    assert_eq!(post_json(port, "/api/v2/alerts", &body), 200);

    let expect_inhibited: BTreeSet<&str> = [
        "ImdAnomalyDetected/warning/h1:9100/",
        "ImdAnomalyDetected/warning/h3:9100/",
        "ImdDiskMayFill/warning/h4:9100//",
        "ImdAnalyzerStale/warning/a:9110/",
    ]
    .into();
    let key = |a: &serde_json::Value| {
        let l = &a["labels"];
        format!(
            "{}/{}/{}/{}",
            l["alertname"].as_str().unwrap_or(""),
            l["severity"].as_str().unwrap_or(""),
            l["instance"].as_str().unwrap_or(""),
            l["mountpoint"].as_str().unwrap_or("")
        )
    };
    let want: BTreeSet<String> = expect_inhibited.iter().map(|s| s.to_string()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(port, "/api/v2/alerts").unwrap();
        assert_eq!(status, 200, "{body}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let inhibited: BTreeSet<String> = all
            .iter()
            .filter(|a| {
                a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
            })
            .map(key)
            .collect();
        if all.len() == alerts.len() && inhibited == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} alerts; inhibited {inhibited:?}, expected {want:?}",
            all.len(),
            alerts.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
