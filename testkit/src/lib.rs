//! Harness shared by the integration tests of imd-exporter and imd-analyzer
//! (used only as a dev-dependency): tests start real processes (the crates'
//! own binaries, Debian's `prometheus`, `prometheus-alertmanager`, ...) on
//! loopback ports picked at run time, write into temp dirs, and kill every
//! child by PID when its guard is dropped, so a failing test leaves nothing
//! behind.
//!
//! - [`clock`]: the wall clock as Prometheus timestamps;
//! - [`process`]: the child-process guard [`Proc`], tools on `PATH`, temp
//!   dirs, running commands and waiting for conditions;
//! - [`ports`]: loopback ports for the servers a test starts, and whether
//!   a server holds its own;
//! - [`http`]: plain-HTTP probes of loopback servers (reqwest's blocking
//!   client);
//! - [`prometheus`]: starting Prometheus and Alertmanager, querying them;
//! - [`pki`]: throwaway TLS material made with the `openssl` CLI.

pub mod clock;
pub mod http;
pub mod pki;
pub mod ports;
pub mod process;
pub mod prometheus;

pub use clock::{unix_now_ms, unix_now_s};
pub use http::{Response, http_get, http_get_status, http_get_text, http_post, url_encode};
pub use ports::free_port;
pub use process::{INSTALL_HINT, Proc, require_tool, run, run_capture, run_ok, tempdir, wait_for};
pub use prometheus::{
    am_active_alerts, prom_query, result_value, spawn_alertmanager, spawn_prometheus,
    spawn_prometheus_file, start_alertmanager, start_alertmanager_on, start_prometheus,
    start_prometheus_on,
};
