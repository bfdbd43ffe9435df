//! Listing series without their samples, through the Prometheus HTTP API's
//! `GET /api/v1/series` (served by Prometheus, Thanos, Cortex, Mimir and
//! VictoriaMetrics alike): the label sets a selector matches within a time
//! range. A sharded replica uses it to find which series it owns before
//! reading any samples (see [`super::pushdown`]).

use super::http::{self, HttpClient};
use super::promql::promql_selector;
use super::{Labels, ReadError, Selector};

/// The series endpoint next to a remote-read endpoint
/// (`…/api/v1/read` → `…/api/v1/series`); `None` when the URL does not end
/// in `/read`, i.e. the API layout is unknown.
pub fn next_to_remote_read(read_url: &reqwest::Url) -> Option<reqwest::Url> {
    let path = read_url.path().trim_end_matches('/');
    let base = path.strip_suffix("/read")?;
    let mut u = read_url.clone();
    u.set_path(&format!("{base}/series"));
    u.set_query(None);
    Some(u)
}

/// The series endpoint under a query API's base URL
/// (`http://vm:8428/prometheus` → `…/prometheus/api/v1/series`).
pub fn under_base(base: &reqwest::Url) -> reqwest::Url {
    let mut u = base.clone();
    let path = format!("{}/api/v1/series", base.path().trim_end_matches('/'));
    u.set_path(&path);
    u.set_query(None);
    u
}

/// The label sets (sorted by name) of the series `selector` matches with
/// samples in `[from_ms, to_ms]`, as `endpoint` lists them (a server may
/// list a few more, e.g. whole days in VictoriaMetrics; reading them finds
/// no samples). `bytes` grows by the size of the answer.
pub fn list(
    client: &HttpClient,
    endpoint: &reqwest::Url,
    selector: &Selector,
    from_ms: i64,
    to_ms: i64,
    max_bytes: usize,
    bytes: &mut u64,
) -> Result<Vec<Labels>, ReadError> {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("match[]", &promql_selector(selector))
        .append_pair("start", &seconds(from_ms))
        .append_pair("end", &seconds(to_ms));
    let resp = client.send(client.get(url)?, endpoint)?;
    let body = http::read_body(resp, endpoint, max_bytes)?;
    *bytes += body.len() as u64;
    let answer: SeriesAnswer = serde_json::from_slice(&body).map_err(|e| {
        ReadError::Decode(format!(
            "{} did not answer /api/v1/series JSON: {e}",
            http::redact(endpoint)
        ))
    })?;
    if answer.status != "success" {
        return Err(ReadError::Decode(format!(
            "{} answered status {:?} to a series listing: {}",
            http::redact(endpoint),
            answer.status,
            answer.error.unwrap_or_default()
        )));
    }
    let mut out: Vec<Labels> = answer
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.into_iter().collect())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Milliseconds as the decimal seconds the API takes.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

#[derive(serde::Deserialize)]
struct SeriesAnswer {
    status: String,
    /// Label sets; a BTreeMap keeps them sorted by name, as [`Labels`] are.
    #[serde(default)]
    data: Option<Vec<std::collections::BTreeMap<String, String>>>,
    #[serde(default)]
    error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::http::HttpOptions;
    use super::super::http::testserver::serve;
    use super::*;

    #[test]
    fn endpoints_sit_next_to_the_read_api() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            next_to_remote_read(&u("http://mimir/prometheus/api/v1/read"))
                .unwrap()
                .as_str(),
            "http://mimir/prometheus/api/v1/series"
        );
        assert!(next_to_remote_read(&u("http://x/custom/endpoint")).is_none());
        assert_eq!(
            under_base(&u("http://vm:8428/prometheus/")).as_str(),
            "http://vm:8428/prometheus/api/v1/series"
        );
    }

    #[test]
    fn lists_label_sets_sorted_and_sends_the_selector_and_range() {
        let body = br#"{"status":"success","data":[
            {"job":"b","__name__":"up"},{"__name__":"up","job":"a"},{"job":"a","__name__":"up"}]}"#;
        let (url, seen) = serve(vec![
            (200, "application/json", body.to_vec()),
            (200, "application/json", b"<html>".to_vec()),
            (404, "text/plain", b"404 page not found".to_vec()),
        ]);
        let client = HttpClient::new(&HttpOptions::default()).unwrap();
        let endpoint = under_base(&reqwest::Url::parse(&url).unwrap());
        let sel = Selector::parse(r#"up{job=~"a|b"}"#).unwrap();
        let mut bytes = 0;
        let got = list(&client, &endpoint, &sel, 1_000, 61_500, 1 << 20, &mut bytes).unwrap();
        let l = |j: &str| {
            vec![
                ("__name__".to_string(), "up".to_string()),
                ("job".into(), j.into()),
            ]
        };
        assert_eq!(got, vec![l("a"), l("b")]);
        assert_eq!(bytes, body.len() as u64);
        let req = String::from_utf8_lossy(&seen.lock().unwrap()[0]).to_string();
        let target = req.split_whitespace().nth(1).unwrap();
        let u = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
        assert_eq!(u.path(), "/api/v1/series");
        let q: std::collections::BTreeMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["match[]"], r#"{__name__="up",job=~"a|b"}"#);
        assert_eq!(
            (q["start"].as_str(), q["end"].as_str()),
            ("1.000", "61.500")
        );
        let e = list(&client, &endpoint, &sel, 0, 1, 1 << 20, &mut bytes).unwrap_err();
        assert_eq!(e.kind(), "decode", "{e}");
        let e = list(&client, &endpoint, &sel, 0, 1, 1 << 20, &mut bytes).unwrap_err();
        assert_eq!(e.kind(), "http_status", "{e}");
    }
}
