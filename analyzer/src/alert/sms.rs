//! `imd-analyzer sms-bridge`: an Alertmanager webhook receiver that sends
//! each notification as an SMS through an HTTP SMS gateway with a
//! Twilio-style API.
//!
//! Alertmanager posts its webhook payload (version 4) to
//! `/webhook/<recipients>`, where `<recipients>` names a list of phone
//! numbers in the bridge's configuration, so one bridge serves several
//! receivers:
//!
//! ```yaml
//! receivers:
//!   - name: secondary-sms
//!     webhook_configs:
//!       - url: http://imd-sms-bridge:9111/webhook/secondary
//!         send_resolved: true
//! ```
//!
//! For every number the bridge posts an HTML form (`To`, `From`, `Body`,
//! names configurable) to `<url><path>`, by default
//! `/2010-04-01/Accounts/<account_sid>/Messages.json` with basic
//! authentication `account_sid:auth_token`, as Twilio's Messages API takes
//! it. The text is `[FIRING:2] <alertname> <group labels>: <summary> (+1 more)`,
//! cut to `message.max_length` characters.
//!
//! The bridge answers Alertmanager as soon as it has accepted the
//! notification and owns delivery from then on: transient failures (no
//! connection, timeouts, HTTP 5xx, 408, 429 with its `Retry-After`) are
//! retried with exponential backoff; a token bucket per number and a global
//! one drop messages beyond the configured rates (an SMS storm helps no
//! one, and Alertmanager repeats what is still firing). Everything is
//! counted in `/metrics` (`imd_sms_sent_total`, `imd_sms_failed_total`,
//! `imd_sms_rate_limited_total`, ...).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use imd_exporter::config::{ConfigError, load_yaml};
use imd_exporter::exposition::Family;
use serde::Deserialize;

use crate::http::{
    BasicAuth, ClientSettings, Credentials, HttpOptions, Secret, TlsOptions, error_chain,
};

/// The bridge's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsBridgeConfig {
    /// The SMS gateway.
    pub gateway: GatewayConfig,
    /// Named lists of phone numbers; the webhook path names one.
    pub recipients: BTreeMap<String, Vec<String>>,
    /// How messages are written.
    #[serde(default)]
    pub message: MessageConfig,
    /// Retries of failed sends.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// Where and how messages are posted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Base URL of the gateway.
    #[serde(default = "default_gateway_url")]
    pub url: String,
    /// Path below `url`; `{account_sid}` is replaced.
    #[serde(default = "default_gateway_path")]
    pub path: String,
    /// Account id: the user name of basic authentication and part of the
    /// default path.
    #[serde(default)]
    pub account_sid: String,
    /// Password of basic authentication, inline.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Or a file holding it (read at each send, so rotation needs no restart).
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// The sending number (or alphanumeric sender id).
    #[serde(default)]
    pub from: String,
    /// Names of the form fields.
    #[serde(default)]
    pub fields: FieldNames,
    /// More form fields sent with every message (e.g. `MessagingServiceSid`).
    #[serde(default)]
    pub extra_fields: BTreeMap<String, String>,
    /// Limit for one request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for an `https://` gateway.
    #[serde(default)]
    pub tls_config: TlsOptions,
}

fn default_gateway_url() -> String {
    "https://api.twilio.com".into()
}
fn default_gateway_path() -> String {
    "/2010-04-01/Accounts/{account_sid}/Messages.json".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Names of the form fields the gateway takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldNames {
    /// The recipient.
    pub to: String,
    /// The sender.
    pub from: String,
    /// The text.
    pub body: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            to: "To".into(),
            from: "From".into(),
            body: "Body".into(),
        }
    }
}

/// How messages are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// Longest text in characters; longer ones are cut and end with `…`.
    pub max_length: usize,
    /// Put in front of every text (e.g. `[prod] `).
    pub prefix: String,
}

impl Default for MessageConfig {
    fn default() -> Self {
        MessageConfig {
            max_length: 320,
            prefix: String::new(),
        }
    }
}

/// Retries of failed sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest wait between attempts (also caps `Retry-After`).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 5,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Token buckets: one token per message, one new token every `every`, at
/// most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Time to earn one token.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Most tokens saved up (and the start value).
    pub burst: u32,
}

/// Rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// All messages together.
    pub global: BucketConfig,
    /// Messages to one number.
    pub per_recipient: BucketConfig,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            global: BucketConfig {
                every: Duration::from_secs(1),
                burst: 20,
            },
            per_recipient: BucketConfig {
                every: Duration::from_secs(60),
                burst: 5,
            },
        }
    }
}

impl SmsBridgeConfig {
    /// Loads and checks a configuration file.
    pub fn load(file: &Path) -> Result<SmsBridgeConfig, ConfigError> {
        let c: SmsBridgeConfig = load_yaml(file)?;
        c.validate()
            .map_err(|(k, m)| ConfigError::at_key(file, &k, m))?;
        Ok(c)
    }

    /// Checks what the schema cannot: (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let g = &self.gateway;
        let e = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if !(g.url.starts_with("http://") || g.url.starts_with("https://")) {
            return e("gateway.url", "must be an http:// or https:// URL");
        }
        if g.path.contains("{account_sid}") && g.account_sid.is_empty() {
            return e("gateway.account_sid", "is needed by gateway.path");
        }
        if g.from.is_empty() {
            return e("gateway.from", "must not be empty");
        }
        for (k, v) in [
            ("to", &g.fields.to),
            ("from", &g.fields.from),
            ("body", &g.fields.body),
        ] {
            if v.is_empty() {
                return Err((format!("gateway.fields.{k}"), "must not be empty".into()));
            }
        }
        if g.timeout.is_zero() {
            return e("gateway.timeout", "must be positive");
        }
        if self.recipients.is_empty() {
            return e("recipients", "at least one list of numbers is needed");
        }
        for (name, numbers) in &self.recipients {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err((
                    format!("recipients.{name}"),
                    "names may hold letters, digits, `-`, `_` and `.` (they are URL paths)".into(),
                ));
            }
            if numbers.is_empty() || numbers.iter().any(|n| n.trim().is_empty()) {
                return Err((
                    format!("recipients.{name}"),
                    "needs at least one number, none empty".into(),
                ));
            }
        }
        if self.message.max_length < 20 {
            return e("message.max_length", "must be at least 20");
        }
        if self.retry.attempts == 0 {
            return e("retry.attempts", "must be at least 1");
        }
        if self.retry.min_backoff.is_zero() || self.retry.max_backoff < self.retry.min_backoff {
            return e(
                "retry",
                "min_backoff must be positive and max_backoff not below it",
            );
        }
        for (k, b) in [
            ("rate_limit.global", self.rate_limit.global),
            ("rate_limit.per_recipient", self.rate_limit.per_recipient),
        ] {
            if b.every.is_zero() || b.burst == 0 {
                return Err((
                    k.into(),
                    "`every` must be positive and `burst` at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A token bucket. Written by hand: two buckets checked together are a
/// dozen lines, less than adapting a rate-limiting crate's API to it.
#[derive(Debug, Clone)]
struct Bucket {
    config: BucketConfig,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(config: BucketConfig, now: Instant) -> Bucket {
        Bucket {
            config,
            tokens: f64::from(config.burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64()
            / self.config.every.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(self.config.burst));
        self.last = now;
    }
}

/// Which limit stopped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    Global,
    Recipient,
}

#[derive(Debug)]
struct Limiter {
    global: Bucket,
    per: BucketConfig,
    recipients: HashMap<String, Bucket>,
}

impl Limiter {
    /// Takes a token for `to` from both buckets, or none.
    fn take(&mut self, to: &str, now: Instant) -> Result<(), Limited> {
        let per = self.per;
        let r = self
            .recipients
            .entry(to.to_string())
            .or_insert_with(|| Bucket::new(per, now));
        r.refill(now);
        self.global.refill(now);
        if r.tokens < 1.0 {
            return Err(Limited::Recipient);
        }
        if self.global.tokens < 1.0 {
            return Err(Limited::Global);
        }
        r.tokens -= 1.0;
        self.global.tokens -= 1.0;
        Ok(())
    }
}

/// The bridge's counters.
#[derive(Debug, Default)]
struct Counters {
    notifications: AtomicU64,
    invalid: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    truncated: AtomicU64,
    limited_global: AtomicU64,
    limited_recipient: AtomicU64,
    in_flight: AtomicUsize,
}

/// The SMS bridge: formats, limits and sends.
#[derive(Debug)]
pub struct SmsBridge {
    config: SmsBridgeConfig,
    endpoint: reqwest::Url,
    client: reqwest::Client,
    settings: ClientSettings,
    limiter: Mutex<Limiter>,
    counters: Counters,
}

/// Alertmanager's webhook payload (fields the bridge uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// `firing` or `resolved` (the group's).
    #[serde(default)]
    pub status: String,
    /// Labels the group is made of.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the group has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// The alerts.
    pub alerts: Vec<NotifiedAlert>,
    /// Alerts left out by Alertmanager's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
}

/// One alert of a webhook payload.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifiedAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The text of a notification, before the prefix and truncation:
/// `[FIRING:2] Alertname k=v ...: summary (+1 more)`, like the title of
/// Alertmanager's own templates.
pub fn message_text(n: &Notification) -> String {
    let firing = n.alerts.iter().filter(|a| a.status == "firing").count();
    let head = if n.status == "resolved" || firing == 0 {
        "[RESOLVED]".to_string()
    } else {
        format!("[FIRING:{firing}]")
    };
    let mut group = Vec::new();
    let name = n
        .group_labels
        .get("alertname")
        .or_else(|| n.common_labels.get("alertname"));
    if let Some(a) = name {
        group.push(a.clone());
    }
    for (k, v) in &n.group_labels {
        if k != "alertname" {
            group.push(format!("{k}={v}"));
        }
    }
    // The first alert in the group's state says what it is about.
    let first = n
        .alerts
        .iter()
        .find(|a| firing == 0 || a.status == "firing")
        .or(n.alerts.first());
    let about = first.map(|a| {
        a.annotations
            .get("summary")
            .or_else(|| a.annotations.get("description"))
            .cloned()
            .unwrap_or_else(|| {
                a.labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname" && !n.group_labels.contains_key(*k))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    });
    let mut text = head;
    if !group.is_empty() {
        text.push(' ');
        text.push_str(&group.join(" "));
    }
    if let Some(about) = about.filter(|s| !s.is_empty()) {
        text.push_str(": ");
        text.push_str(&about);
    }
    let more = n.alerts.len() as u64 + n.truncated_alerts;
    if more > 1 {
        text.push_str(&format!(" (+{} more)", more - 1));
    }
    text
}

/// `text` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        return (text.to_string(), false);
    }
    if max == 0 {
        return (String::new(), true);
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    (s, true)
}

impl SmsBridge {
    /// Checks the configuration and builds the gateway client.
    pub fn new(config: SmsBridgeConfig) -> anyhow::Result<SmsBridge> {
        config
            .validate()
            .map_err(|(k, m)| anyhow::anyhow!("key `{k}`: {m}"))?;
        let g = &config.gateway;
        let path = g.path.replace("{account_sid}", &g.account_sid);
        let mut endpoint = reqwest::Url::parse(&g.url)
            .map_err(|e| anyhow::anyhow!("key `gateway.url`: {:?} is not a URL: {e}", g.url))?;
        let joined = format!(
            "{}/{}",
            endpoint.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        endpoint.set_path(&joined);
        let basic_auth = match (&g.auth_token, &g.auth_token_file) {
            (None, None) => None,
            (password, password_file) => Some(BasicAuth {
                username: g.account_sid.clone(),
                password: password.clone(),
                password_file: password_file.clone(),
            }),
        };
        if basic_auth.is_some() && g.account_sid.is_empty() {
            anyhow::bail!(
                "key `gateway.account_sid`: needed with an auth token (the basic-auth user)"
            );
        }
        let opts = HttpOptions {
            timeout: g.timeout,
            basic_auth,
            headers: g.headers.clone(),
            tls: g.tls_config.clone(),
            ..HttpOptions::default()
        };
        let settings = ClientSettings::new(&opts).map_err(|e| {
            let msg = e
                .at("gateway")
                .replace("basic_auth.password_file", "auth_token_file")
                .replace("password_file", "auth_token_file");
            anyhow::anyhow!("{msg}")
        })?;
        let client = settings.async_builder().build()?;
        let now = Instant::now();
        let limiter = Limiter {
            global: Bucket::new(config.rate_limit.global, now),
            per: config.rate_limit.per_recipient,
            recipients: HashMap::new(),
        };
        Ok(SmsBridge {
            config,
            endpoint,
            client,
            settings,
            limiter: Mutex::new(limiter),
            counters: Counters::default(),
        })
    }

    /// The URL messages are posted to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Takes a notification for the list `recipients`: writes the text and
    /// starts one send per number that the rate limits let through.
    /// Returns how many sends started; errors name what is wrong with the
    /// request. Must run inside a Tokio runtime.
    pub fn accept(
        self: &Arc<Self>,
        recipients: &str,
        n: &Notification,
    ) -> Result<usize, (StatusCode, String)> {
        let Some(numbers) = self.config.recipients.get(recipients) else {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            return Err((
                StatusCode::NOT_FOUND,
                format!("no recipient list named {recipients:?}"),
            ));
        };
        if n.alerts.is_empty() {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            return Err((
                StatusCode::BAD_REQUEST,
                "the notification has no alerts".into(),
            ));
        }
        self.counters.notifications.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}{}", self.config.message.prefix, message_text(n));
        let (body, cut) = truncate(&text, self.config.message.max_length);
        if cut {
            self.counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
        let mut started = 0;
        for to in numbers {
            let verdict = self
                .limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(to, Instant::now());
            match verdict {
                Err(Limited::Global) => {
                    self.counters.limited_global.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(to = %to, "SMS dropped: global rate limit");
                }
                Err(Limited::Recipient) => {
                    self.counters
                        .limited_recipient
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(to = %to, "SMS dropped: rate limit of this number");
                }
                Ok(()) => {
                    self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
                    let me = self.clone();
                    let (to, body) = (to.clone(), body.clone());
                    tokio::spawn(async move {
                        me.deliver(&to, &body).await;
                        me.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                    started += 1;
                }
            }
        }
        Ok(started)
    }

    /// Sends one message, retrying transient failures.
    async fn deliver(&self, to: &str, body: &str) {
        let r = &self.config.retry;
        let mut backoff = r.min_backoff;
        for attempt in 1..=r.attempts {
            match self.post(to, body).await {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(to = %to, attempt, "SMS sent");
                    return;
                }
                Err(Failure::Final(e)) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(to = %to, error = %e, "SMS refused by the gateway");
                    return;
                }
                Err(Failure::Transient(e, retry_after)) => {
                    if attempt == r.attempts {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(to = %to, error = %e, attempts = attempt, "SMS not sent; giving up");
                        return;
                    }
                    let wait = retry_after.unwrap_or(backoff).min(r.max_backoff);
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(to = %to, error = %e, retry_in = ?wait, "SMS failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(r.max_backoff);
                }
            }
        }
    }

    /// One request to the gateway.
    async fn post(&self, to: &str, body: &str) -> Result<(), Failure> {
        let g = &self.config.gateway;
        let mut form: Vec<(&str, &str)> = vec![
            (g.fields.to.as_str(), to),
            (g.fields.from.as_str(), g.from.as_str()),
            (g.fields.body.as_str(), body),
        ];
        for (k, v) in &g.extra_fields {
            form.push((k, v));
        }
        let mut req = self.client.post(self.endpoint.clone()).form(&form);
        match self.settings.credentials().map_err(Failure::Final)? {
            Credentials::None => {}
            Credentials::Basic(u, p) => req = req.basic_auth(u, p),
            Credentials::Bearer(t) => req = req.bearer_auth(t),
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(error_chain(&e), None))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .trim()
            .chars()
            .take(300)
            .collect();
        let msg = format!("HTTP {status}: {text}");
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(Failure::Transient(msg, retry_after))
        } else {
            Err(Failure::Final(msg))
        }
    }

    /// Messages being sent (retries included).
    pub fn in_flight(&self) -> usize {
        self.counters.in_flight.load(Ordering::Relaxed)
    }

    /// Messages sent so far.
    pub fn sent_total(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// The bridge's metrics.
    pub fn families(&self) -> Vec<Family> {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = Vec::new();
        for (name, help, v) in [
            (
                "imd_sms_notifications_total",
                "Alertmanager notifications accepted.",
                get(&c.notifications),
            ),
            (
                "imd_sms_invalid_requests_total",
                "Webhook requests refused (unknown recipient list, bad payload).",
                get(&c.invalid),
            ),
            (
                "imd_sms_sent_total",
                "Messages the gateway accepted.",
                get(&c.sent),
            ),
            (
                "imd_sms_failed_total",
                "Messages given up on (refused by the gateway, or out of retries).",
                get(&c.failed),
            ),
            (
                "imd_sms_retries_total",
                "Repeated attempts after a transient failure.",
                get(&c.retries),
            ),
            (
                "imd_sms_truncated_total",
                "Notifications whose text was cut to message.max_length.",
                get(&c.truncated),
            ),
        ] {
            let mut f = Family::counter(name, help);
            f.push_value(v);
            out.push(f);
        }
        let mut limited = Family::counter(
            "imd_sms_rate_limited_total",
            "Messages dropped by a rate limit, by limit (global or per recipient).",
        );
        limited.push([("limit", "global")], get(&c.limited_global));
        limited.push([("limit", "recipient")], get(&c.limited_recipient));
        out.push(limited);
        let mut flight = Family::gauge(
            "imd_sms_in_flight",
            "Messages being sent or waiting to be retried.",
        );
        flight.push_value(c.in_flight.load(Ordering::Relaxed) as f64);
        out.push(flight);
        out
    }

    /// The bridge's routes: `POST /webhook/{recipients}`, the metrics at
    /// `telemetry_path`, `/-/healthy`, `/-/ready`.
    pub fn router(self: Arc<Self>, telemetry_path: &str) -> Router {
        Router::new()
            .route("/webhook/{recipients}", post(webhook))
            .route(telemetry_path, get(metrics))
            .with_state(self)
            .merge(imd_exporter::web::health_routes(|| true))
    }
}

enum Failure {
    /// Worth another attempt, possibly after the gateway's `Retry-After`.
    Transient(String, Option<Duration>),
    /// Would fail the same way again.
    Final(String),
}

async fn webhook(
    State(b): State<Arc<SmsBridge>>,
    UrlPath(recipients): UrlPath<String>,
    body: Bytes,
) -> Response {
    let n: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            b.counters.invalid.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::BAD_REQUEST,
                format!("not an Alertmanager webhook payload: {e}\n"),
            )
                .into_response();
        }
    };
    match b.accept(&recipients, &n) {
        Ok(started) => (
            StatusCode::OK,
            format!("accepted, {started} message(s) sending\n"),
        )
            .into_response(),
        Err((status, msg)) => (status, format!("{msg}\n")).into_response(),
    }
}

async fn metrics(State(b): State<Arc<SmsBridge>>, headers: HeaderMap) -> Response {
    let mut fams = b.families();
    fams.extend(imd_exporter::collectors::process_self::families());
    imd_exporter::web::exposition_response(&headers, &imd_exporter::scrape::merge(fams))
}

/// The bridge of the configuration file `config_file`; errors name it.
fn from_file(config_file: &Path) -> anyhow::Result<SmsBridge> {
    let config = SmsBridgeConfig::load(config_file)?;
    SmsBridge::new(config).map_err(|e| anyhow::anyhow!("{}: {e}", config_file.display()))
}

/// What `sms-bridge --check-config` does: loads the configuration and
/// builds the bridge as a start would (the auth token file is read), and
/// the web config with its certificates; returns a summary.
pub fn check(config_file: &Path, web_config: Option<&Path>) -> anyhow::Result<String> {
    let bridge = from_file(config_file)?;
    if let Some(f) = web_config {
        imd_exporter::web::WebConfig::load(f)?;
    }
    let lists = &bridge.config.recipients;
    Ok(format!(
        "configuration OK: gateway {}, {} recipient list(s) ({}), {} number(s)",
        bridge.endpoint(),
        lists.len(),
        lists.keys().cloned().collect::<Vec<_>>().join(", "),
        lists.values().map(Vec::len).sum::<usize>()
    ))
}

/// Runs the bridge until `shutdown` completes, then waits (up to 10 s) for
/// messages still being sent.
pub async fn run(
    config_file: &Path,
    listen: &[String],
    web_config: Option<&Path>,
    telemetry_path: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bridge = Arc::new(from_file(config_file)?);
    tracing::info!(
        gateway = bridge.endpoint(),
        lists = bridge.config.recipients.len(),
        "starting the SMS bridge"
    );
    let served = imd_exporter::web::serve(
        bridge.clone().router(telemetry_path),
        listen,
        web_config,
        shutdown,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if bridge.in_flight() > 0 {
        tracing::warn!(
            messages = bridge.in_flight(),
            "shutting down with messages not sent"
        );
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// One request the fake gateway received.
    #[derive(Debug, Clone)]
    struct Got {
        path: String,
        auth: String,
        form: BTreeMap<String, String>,
    }

    #[derive(Default)]
    struct Fake {
        got: Vec<Got>,
        /// Statuses to answer with, in order; 201 when empty.
        script: VecDeque<u16>,
    }

    /// A Twilio-like gateway on loopback; returns its base URL.
    async fn gateway(state: Arc<Mutex<Fake>>) -> String {
        let app = Router::new()
            .route(
                "/{*rest}",
                post(
                    |State(s): State<Arc<Mutex<Fake>>>,
                     uri: axum::http::Uri,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let form = reqwest::Url::parse(&format!(
                            "http://x/?{}",
                            String::from_utf8_lossy(&body)
                        ))
                        .unwrap()
                        .query_pairs()
                        .into_owned()
                        .collect();
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let mut s = s.lock().unwrap();
                        s.got.push(Got {
                            path: uri.path().to_string(),
                            auth,
                            form,
                        });
                        let code = s.script.pop_front().unwrap_or(201);
                        let mut r = (StatusCode::from_u16(code).unwrap(), "{}").into_response();
                        if code == 429 {
                            r.headers_mut().insert("retry-after", "0".parse().unwrap());
                        }
                        r
                    },
                ),
            )
            .with_state(state);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://127.0.0.1:{port}")
    }

    fn config(url: &str) -> SmsBridgeConfig {
        let yaml = format!(
            r#"
gateway:
  url: {url}
  account_sid: AC123
  auth_token: tok
  from: "+15550000000"
  extra_fields: {{StatusCallback: "http://cb"}}
recipients:
  secondary: ["+15550000001", "+15550000002"]
  manager: ["+15550000003"]
retry: {{attempts: 3, min_backoff: 10ms, max_backoff: 50ms}}
rate_limit:
  global: {{every: 1h, burst: 100}}
  per_recipient: {{every: 1h, burst: 100}}
"#
        );
        imd_exporter::config::parse_yaml(Path::new("sms.yml"), &yaml).unwrap()
    }

    fn notification(status: &str, n: usize, summary: &str) -> Notification {
        let alerts: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "status": status,
                    "labels": {"alertname": "ImdAnomaly", "instance": format!("h{i}"), "escalation_level": "1"},
                    "annotations": {"summary": summary},
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "version": "4", "status": status, "receiver": "sms",
            "groupLabels": {"alertname": "ImdAnomaly", "escalation_level": "1"},
            "commonLabels": {"alertname": "ImdAnomaly"},
            "alerts": alerts,
        }))
        .unwrap()
    }

    async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn texts_look_like_alertmanager_titles_and_are_cut() {
        let n = notification("firing", 2, "load on h0 is 60");
        assert_eq!(
            message_text(&n),
            "[FIRING:2] ImdAnomaly escalation_level=1: load on h0 is 60 (+1 more)"
        );
        let n = notification("resolved", 1, "load on h0 is 60");
        assert_eq!(
            message_text(&n),
            "[RESOLVED] ImdAnomaly escalation_level=1: load on h0 is 60"
        );
        // Without annotations, the alert's own labels say what it is.
        let mut n = notification("firing", 1, "");
        n.alerts[0].annotations.clear();
        assert_eq!(
            message_text(&n),
            "[FIRING:1] ImdAnomaly escalation_level=1: instance=h0"
        );
        assert_eq!(truncate("abcdef", 6), ("abcdef".to_string(), false));
        assert_eq!(truncate("abcdefg", 6), ("abcde…".to_string(), true));
        assert_eq!(truncate("ééééééé", 4).0.chars().count(), 4);
        assert_eq!(truncate("a", 0), (String::new(), true));
        assert_eq!(truncate("", 0), (String::new(), false));
    }

    #[tokio::test]
    async fn messages_are_posted_as_twilio_forms_with_basic_auth() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let url = gateway(fake.clone()).await;
        let mut c = config(&url);
        c.message.max_length = 40;
        c.message.prefix = "[prod] ".into();
        let b = Arc::new(SmsBridge::new(c).unwrap());
        assert_eq!(
            b.endpoint(),
            format!("{url}/2010-04-01/Accounts/AC123/Messages.json")
        );
        let n = notification("firing", 1, "load on h0 is far above what is expected");
        assert_eq!(b.accept("secondary", &n).unwrap(), 2);
        wait("two messages", || fake.lock().unwrap().got.len() == 2).await;
        wait("both counted", || b.sent_total() == 2).await;
        let got = fake.lock().unwrap().got.clone();
        let mut to: Vec<&str> = got.iter().map(|g| g.form["To"].as_str()).collect();
        to.sort();
        assert_eq!(to, ["+15550000001", "+15550000002"]);
        for g in &got {
            assert_eq!(g.path, "/2010-04-01/Accounts/AC123/Messages.json");
            // base64("AC123:tok")
            assert_eq!(g.auth, "Basic QUMxMjM6dG9r");
            assert_eq!(g.form["From"], "+15550000000");
            assert_eq!(g.form["StatusCallback"], "http://cb");
            assert_eq!(g.form["Body"].chars().count(), 40);
            assert!(
                g.form["Body"].starts_with("[prod] [FIRING:1] ImdAnomaly"),
                "{}",
                g.form["Body"]
            );
            assert!(g.form["Body"].ends_with('…'));
        }
        let text =
            imd_exporter::exposition::encode(&b.families(), imd_exporter::exposition::Format::Text);
        assert!(text.contains("imd_sms_sent_total 2"), "{text}");
        assert!(text.contains("imd_sms_truncated_total 1"), "{text}");
        assert!(text.contains("imd_sms_failed_total 0"), "{text}");
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_refusals_are_not() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let url = gateway(fake.clone()).await;
        let b = Arc::new(SmsBridge::new(config(&url)).unwrap());
        fake.lock().unwrap().script = [503, 429].into();
        b.accept("manager", &notification("firing", 1, "x"))
            .unwrap();
        wait("the third attempt to succeed", || b.sent_total() == 1).await;
        assert_eq!(fake.lock().unwrap().got.len(), 3);
        assert_eq!(b.counters.retries.load(Ordering::Relaxed), 2);

        // A 400 is final; three 500s exhaust the attempts.
        fake.lock().unwrap().script = [400, 500, 500, 500].into();
        b.accept("manager", &notification("firing", 1, "x"))
            .unwrap();
        wait("the refusal", || {
            b.counters.failed.load(Ordering::Relaxed) == 1
        })
        .await;
        b.accept("manager", &notification("firing", 1, "x"))
            .unwrap();
        wait("the attempts to run out", || {
            b.counters.failed.load(Ordering::Relaxed) == 2
        })
        .await;
        wait("nothing left in flight", || b.in_flight() == 0).await;
        assert_eq!(fake.lock().unwrap().got.len(), 3 + 1 + 3);
        assert_eq!(b.sent_total(), 1);
        assert_eq!(b.counters.retries.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn rate_limits_drop_what_exceeds_them() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let url = gateway(fake.clone()).await;
        let mut c = config(&url);
        c.rate_limit.per_recipient = BucketConfig {
            every: Duration::from_secs(3600),
            burst: 2,
        };
        c.rate_limit.global = BucketConfig {
            every: Duration::from_secs(3600),
            burst: 4,
        };
        let b = Arc::new(SmsBridge::new(c).unwrap());
        let n = notification("firing", 1, "x");
        // The manager's number: two, then its own limit.
        assert_eq!(b.accept("manager", &n).unwrap(), 1);
        assert_eq!(b.accept("manager", &n).unwrap(), 1);
        assert_eq!(b.accept("manager", &n).unwrap(), 0);
        // Two more numbers: the global bucket has two tokens left.
        assert_eq!(b.accept("secondary", &n).unwrap(), 2);
        assert_eq!(b.accept("secondary", &n).unwrap(), 0);
        wait("four messages", || b.sent_total() == 4).await;
        assert_eq!(b.counters.limited_recipient.load(Ordering::Relaxed), 1);
        assert_eq!(b.counters.limited_global.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn buckets_refill_over_time() {
        let t0 = Instant::now();
        let cfg = BucketConfig {
            every: Duration::from_secs(10),
            burst: 2,
        };
        let mut l = Limiter {
            global: Bucket::new(
                BucketConfig {
                    every: Duration::from_secs(1),
                    burst: 100,
                },
                t0,
            ),
            per: cfg,
            recipients: HashMap::new(),
        };
        assert!(l.take("a", t0).is_ok());
        assert!(l.take("a", t0).is_ok());
        assert_eq!(l.take("a", t0), Err(Limited::Recipient));
        assert_eq!(
            l.take("a", t0 + Duration::from_secs(9)),
            Err(Limited::Recipient)
        );
        assert!(l.take("a", t0 + Duration::from_secs(10)).is_ok());
        // Never more than the burst saved up.
        assert!(l.take("a", t0 + Duration::from_secs(1000)).is_ok());
        assert!(l.take("a", t0 + Duration::from_secs(1000)).is_ok());
        assert!(l.take("a", t0 + Duration::from_secs(1000)).is_err());
        assert!(l.take("b", t0).is_ok(), "each number has its own bucket");
    }

    #[tokio::test]
    async fn the_webhook_route_answers_alertmanager() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let url = gateway(fake.clone()).await;
        let b = Arc::new(SmsBridge::new(config(&url)).unwrap());
        let app = b.clone().router("/metrics");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        crate::http::install_ring_provider();
        let client = reqwest::Client::new();
        let post = |path: &str, body: String| {
            client
                .post(format!("http://127.0.0.1:{port}{path}"))
                .body(body)
                .send()
        };
        let payload = serde_json::json!({
            "version": "4", "status": "firing", "groupLabels": {"alertname": "A"},
            "alerts": [{"status": "firing", "labels": {"alertname": "A"}, "annotations": {"summary": "s"}}],
        })
        .to_string();
        assert_eq!(
            post("/webhook/manager", payload.clone())
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            post("/webhook/nobody", payload).await.unwrap().status(),
            404
        );
        assert_eq!(
            post("/webhook/manager", "{".into()).await.unwrap().status(),
            400
        );
        wait("the message", || b.sent_total() == 1).await;
        assert_eq!(fake.lock().unwrap().got[0].form["Body"], "[FIRING:1] A: s");
        let m = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("imd_sms_invalid_requests_total 2"), "{m}");
        assert!(
            m.contains("imd_sms_rate_limited_total{limit=\"global\"} 0"),
            "{m}"
        );
    }

    #[test]
    fn configuration_mistakes_name_their_key() {
        let bad = |edit: &dyn Fn(&mut SmsBridgeConfig)| {
            let mut c = config("http://127.0.0.1:1");
            edit(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(bad(&|c| c.gateway.url = "gw:80".into()), "gateway.url");
        assert_eq!(
            bad(&|c| c.gateway.account_sid.clear()),
            "gateway.account_sid"
        );
        assert_eq!(bad(&|c| c.gateway.from.clear()), "gateway.from");
        assert_eq!(
            bad(&|c| c.gateway.fields.body.clear()),
            "gateway.fields.body"
        );
        assert_eq!(bad(&|c| c.recipients.clear()), "recipients");
        assert_eq!(
            bad(&|c| {
                c.recipients.insert("a/b".into(), vec!["1".into()]);
            }),
            "recipients.a/b"
        );
        assert_eq!(
            bad(&|c| {
                c.recipients.insert("x".into(), vec![]);
            }),
            "recipients.x"
        );
        assert_eq!(bad(&|c| c.retry.attempts = 0), "retry.attempts");
        assert_eq!(bad(&|c| c.rate_limit.global.burst = 0), "rate_limit.global");
        assert_eq!(bad(&|c| c.message.max_length = 5), "message.max_length");
        let e = imd_exporter::config::parse_yaml::<SmsBridgeConfig>(
            Path::new("sms.yml"),
            "gateway: {from: x, tiemout: 1s}\nrecipients: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tiemout"), "{e}");
        let mut c = config("http://127.0.0.1:1");
        c.gateway.auth_token = None;
        c.gateway.auth_token_file = Some("/nonexistent/token".into());
        let e = SmsBridge::new(c).unwrap_err().to_string();
        assert!(e.contains("gateway.auth_token_file"), "{e}");
    }
}
