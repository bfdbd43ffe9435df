//! The structural check of a Grafana dashboard's JSON: what Grafana's
//! schema (checked separately with `@grafana/schema` and `tsc`) cannot see,
//! such as unique ids, overlapping panels, unresolved variables or links.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::repo_root;

/// The uid of the provisioned data source the dashboards default to.
pub const DATASOURCE_UID: &str = "imd-prometheus";

/// Panel types the dashboards may use (all in Grafana's core).
const PANEL_TYPES: &[&str] = &[
    "row",
    "timeseries",
    "stat",
    "table",
    "heatmap",
    "bargauge",
    "gauge",
    "status-history",
    "state-timeline",
    "text",
];

/// Variables Grafana defines itself.
const BUILTIN_VARS: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__url_time_range",
    "__from",
    "__to",
    "__field",
    "__data",
    "__value",
    "__series",
    "__dashboard",
    "__org",
    "__user",
    "__all",
    "timeFilter",
];

/// The dashboards' JSON files, sorted.
pub fn dashboard_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// A dashboard's JSON.
pub fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every (where, PromQL expression) of a dashboard: panel targets and
/// annotation queries.
pub fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let at = format!(
                    "panel {:?} target {}",
                    p["title"].as_str().unwrap_or(""),
                    t["refId"].as_str().unwrap_or("?")
                );
                out.push((at, e.to_string()));
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), e.to_string()));
        }
    }
    out
}

/// The variable names `text` refers to: `$x`, `${x}`, `${x:fmt}`, `[[x]]`.
fn referenced_vars(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(
        r"\$\{([A-Za-z0-9_]+)(?:[.:][^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]",
    )
    .unwrap();
    re.captures_iter(text)
        .map(|c| {
            c.get(1)
                .or(c.get(2))
                .or(c.get(3))
                .unwrap()
                .as_str()
                .to_string()
        })
        .collect()
}

/// Every string in a JSON value.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The structural check of one dashboard; returns what is wrong.
///
/// Checks: `uid` (1–40 characters), `title`, integer `schemaVersion` >= 36,
/// `time`, `templating.list`, `annotations.list`, tag `imd`; panels with
/// unique integer ids, a known type, a title, a `gridPos` inside the 24
/// columns and not overlapping another panel; every data source reference
/// (panels, targets, query variables, annotations) is the Prometheus data
/// source `${datasource}` or the provisioned uid, and the `datasource`
/// variable exists and defaults to the provisioned uid; every target has an
/// `expr` and a `refId` unique in its panel; overrides by query refer to a
/// target of the panel; variable names are unique; every `$var` used
/// anywhere resolves to a variable (defined earlier, for variable queries)
/// or a Grafana built-in; links to `/d/<uid>` point at dashboards of this
/// folder (`uids`).
pub fn check_dashboard(d: &Value, uids: &BTreeSet<String>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut err = |s: String| errs.push(s);
    let uid = d["uid"].as_str().unwrap_or("");
    if uid.is_empty() || uid.len() > 40 {
        err(format!("uid {uid:?} must have 1 to 40 characters"));
    }
    if d["title"].as_str().is_none_or(str::is_empty) {
        err("no title".into());
    }
    match d["schemaVersion"].as_u64() {
        Some(v) if v >= 36 => {}
        v => err(format!("schemaVersion {v:?} is not an integer >= 36")),
    }
    if d["time"]["from"].as_str().is_none() || d["time"]["to"].as_str().is_none() {
        err("no time range".into());
    }
    if !d["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "imd"))
    {
        err("no tag imd".into());
    }
    let Some(vars) = d["templating"]["list"].as_array() else {
        err("no templating.list".into());
        return errs;
    };
    if d["annotations"]["list"].as_array().is_none() {
        err("no annotations.list".into());
    }

    // Variables: unique, in dependency order, the data source one first.
    let mut defined: BTreeSet<String> = BUILTIN_VARS.iter().map(|s| s.to_string()).collect();
    let ds_ok = |ds: &Value| {
        ds["type"] == "prometheus" && (ds["uid"] == "${datasource}" || ds["uid"] == DATASOURCE_UID)
    };
    for v in vars {
        let name = v["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() || defined.contains(&name) {
            err(format!("variable {name:?} is unnamed or defined twice"));
        }
        match v["type"].as_str() {
            Some("datasource") => {
                if v["query"] != "prometheus" || v["current"]["value"] != DATASOURCE_UID {
                    err(format!(
                        "data source variable {name} must list prometheus and default to {DATASOURCE_UID}"
                    ));
                }
            }
            Some("query") => {
                if !ds_ok(&v["datasource"]) {
                    err(format!("variable {name}: data source {}", v["datasource"]));
                }
                let q = v["query"]["query"].as_str().or(v["query"].as_str());
                match q {
                    Some(q) if q.starts_with("label_values(") => {
                        for r in referenced_vars(q) {
                            if !defined.contains(&r) {
                                err(format!(
                                    "variable {name} uses ${r} defined after it or not at all"
                                ));
                            }
                        }
                    }
                    q => err(format!(
                        "variable {name}: query {q:?} is not label_values(...)"
                    )),
                }
            }
            Some("custom" | "constant" | "interval" | "textbox") => {}
            t => err(format!("variable {name}: unknown type {t:?}")),
        }
        defined.insert(name);
    }
    if !vars
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource")
    {
        err("no datasource variable".into());
    }

    // Panels.
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    for p in all_panels(d) {
        let title = p["title"].as_str().unwrap_or("").to_string();
        let ty = p["type"].as_str().unwrap_or("");
        match p["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            id => err(format!("panel {title:?}: id {id:?} missing or not unique")),
        }
        if !PANEL_TYPES.contains(&ty) {
            err(format!("panel {title:?}: unknown type {ty:?}"));
        }
        if title.is_empty() {
            err(format!("panel {:?} has no title", p["id"]));
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap_or(-1),
            g["y"].as_i64().unwrap_or(-1),
            g["w"].as_i64().unwrap_or(0),
            g["h"].as_i64().unwrap_or(0),
        );
        if x < 0 || y < 0 || !(1..=24).contains(&w) || h < 1 || x + w > 24 {
            err(format!("panel {title:?}: bad gridPos {g}"));
        }
        for (other, ox, oy, ow, oh) in &boxes {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                err(format!("panel {title:?} overlaps panel {other:?}"));
            }
        }
        boxes.push((title.clone(), x, y, w, h));
        if ty == "row" || ty == "text" {
            continue;
        }
        if !ds_ok(&p["datasource"]) {
            err(format!("panel {title:?}: data source {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            err(format!("panel {title:?} has no target"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("").to_string();
            if r.is_empty() || !refs.insert(r.clone()) {
                err(format!(
                    "panel {title:?}: refId {r:?} missing or not unique"
                ));
            }
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                err(format!("panel {title:?} target {r}: no expr"));
            }
            if !ds_ok(&t["datasource"]) {
                err(format!(
                    "panel {title:?} target {r}: data source {}",
                    t["datasource"]
                ));
            }
        }
        for o in p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if o["matcher"]["id"] == "byFrameRefID" {
                let r = o["matcher"]["options"].as_str().unwrap_or("");
                if !refs.contains(r) {
                    err(format!("panel {title:?}: override for unknown refId {r:?}"));
                }
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if a["builtIn"] == 1 {
            continue;
        }
        if !ds_ok(&a["datasource"]) || a["expr"].as_str().is_none() {
            err(format!(
                "annotation {}: needs the Prometheus data source and an expr",
                a["name"]
            ));
        }
    }

    // Every variable used anywhere is defined; links point at our dashboards.
    let mut texts = Vec::new();
    strings(&d["panels"], &mut texts);
    strings(&d["annotations"], &mut texts);
    strings(&d["links"], &mut texts);
    let link = regex::Regex::new(r"/d/([A-Za-z0-9_-]+)").unwrap();
    for t in &texts {
        for r in referenced_vars(t) {
            if !defined.contains(&r) {
                err(format!("${r} is not a variable (in {t:?})"));
            }
        }
        for m in link.captures_iter(t) {
            if !uids.contains(&m[1]) {
                err(format!("link to unknown dashboard {} (in {t:?})", &m[1]));
            }
        }
    }
    errs
}
