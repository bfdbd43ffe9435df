//! Command-line pieces shared by both imd binaries (web and log flags), and
//! the exporter's collector flags, built from the collector list.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Args};

use crate::collectors::{ALL, BuildContext, FOREIGN, Spec};
use crate::config::Config;
use crate::paths::Paths;
use crate::scrape::{Entry, Scraper};

/// HTTP flags, named as Prometheus and its exporters name them.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// Addresses to listen on, `host:port` or `:port` for every interface.
    /// Repeat the flag to listen on several.
    #[arg(
        id = "web.listen-address",
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9100"
    )]
    pub listen_address: Vec<String>,
    /// A YAML file that turns on TLS and/or basic authentication, in the
    /// format of Prometheus' exporter-toolkit (`tls_server_config`,
    /// `basic_auth_users` with bcrypt hashes, `http_server_config`).
    #[arg(id = "web.config.file", long = "web.config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Path under which metrics are served.
    #[arg(
        id = "web.telemetry-path",
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,
    /// Most scrapes served at once; more get 503 (0 = no limit).
    #[arg(
        id = "web.max-requests",
        long = "web.max-requests",
        value_name = "N",
        default_value_t = 40
    )]
    pub max_requests: usize,
    /// Enable reloading through HTTP (`POST /-/reload`), as Prometheus'
    /// flag of the same name; without it the endpoint answers 403.
    /// `SIGHUP` reloads either way.
    #[arg(id = "web.enable-lifecycle", long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
}

/// Logging flags, named as Prometheus names them.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Only log messages at or above this level: debug, info, warn, error.
    #[arg(
        id = "log.level",
        long = "log.level",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub level: String,
    /// Log line format: logfmt (key=value, as Prometheus) or json.
    #[arg(id = "log.format", long = "log.format", value_name = "FORMAT", default_value = "logfmt",
          value_parser = ["logfmt", "json"])]
    pub format: String,
}

/// Filesystem roots, as node_exporter names them.
#[derive(Debug, Clone, Args)]
pub struct PathArgs {
    /// procfs mount point.
    #[arg(
        id = "path.procfs",
        long = "path.procfs",
        value_name = "DIR",
        default_value = "/proc"
    )]
    pub procfs: PathBuf,
    /// sysfs mount point.
    #[arg(
        id = "path.sysfs",
        long = "path.sysfs",
        value_name = "DIR",
        default_value = "/sys"
    )]
    pub sysfs: PathBuf,
    /// Root file system of the host (set it when running in a container
    /// with the host's / mounted, e.g. at /host).
    #[arg(
        id = "path.rootfs",
        long = "path.rootfs",
        value_name = "DIR",
        default_value = "/"
    )]
    pub rootfs: PathBuf,
    /// udev data path.
    #[arg(
        id = "path.udev.data",
        long = "path.udev.data",
        value_name = "DIR",
        default_value = "/run/udev/data"
    )]
    pub udev_data: PathBuf,
}

impl PathArgs {
    /// The roots as collectors use them.
    pub fn paths(&self) -> Paths {
        Paths {
            procfs: self.procfs.clone(),
            sysfs: self.sysfs.clone(),
            rootfs: self.rootfs.clone(),
            udev_data: self.udev_data.clone(),
        }
    }
}

/// Adds `--collector.NAME`, `--no-collector.NAME` and each collector's own
/// options to a command, plus accepted-but-ignored flags of node_exporter's
/// other collectors.
pub fn add_collector_flags(mut cmd: clap::Command) -> clap::Command {
    cmd = cmd.arg(
        Arg::new("collector.disable-defaults")
            .long("collector.disable-defaults")
            .action(ArgAction::SetTrue)
            .help("Turn off every collector that is on by default; switch on the wanted ones with --collector.NAME")
            .help_heading("Collectors"),
    );
    for spec in ALL {
        let state = if spec.default_enabled { "on" } else { "off" };
        cmd = cmd
            .arg(
                Arg::new(format!("collector.{}", spec.name))
                    .long(format!("collector.{}", spec.name))
                    .action(ArgAction::SetTrue)
                    .overrides_with(format!("no-collector.{}", spec.name))
                    .help(format!("{} (default {state})", spec.help))
                    .help_heading("Collectors"),
            )
            .arg(
                Arg::new(format!("no-collector.{}", spec.name))
                    .long(format!("no-collector.{}", spec.name))
                    .action(ArgAction::SetTrue)
                    .overrides_with(format!("collector.{}", spec.name))
                    .hide(true),
            );
        for flag in (spec.flags)() {
            cmd = cmd.arg(flag.help_heading("Collector options"));
        }
    }
    for name in FOREIGN {
        cmd = cmd
            .arg(
                Arg::new(format!("collector.{name}"))
                    .long(format!("collector.{name}"))
                    .action(ArgAction::SetTrue)
                    .hide(true),
            )
            .arg(
                Arg::new(format!("no-collector.{name}"))
                    .long(format!("no-collector.{name}"))
                    .action(ArgAction::SetTrue)
                    .hide(true),
            );
    }
    cmd
}

/// Whether a collector is on: a flag wins, then the config file's
/// `collectors.NAME.enabled`, then a config section of the collector's own
/// (e.g. `process_groups`), then `--collector.disable-defaults`, then the
/// collector's default.
pub fn collector_enabled(matches: &ArgMatches, config: &Config, spec: &Spec) -> bool {
    let name = spec.name;
    if matches.get_flag(&format!("collector.{name}")) {
        return true;
    }
    if matches.get_flag(&format!("no-collector.{name}")) {
        return false;
    }
    if let Some(on) = config.collectors.get(name).and_then(|c| c.enabled) {
        return on;
    }
    if (spec.configured)(config) {
        return true;
    }
    if matches.get_flag("collector.disable-defaults") {
        return false;
    }
    spec.default_enabled
}

/// Builds the scraper over every enabled collector. Errors name the
/// collector and what is wrong with its flags or configuration.
pub fn build_scraper(
    matches: &ArgMatches,
    config: &Config,
    paths: &Paths,
    state_dir: Option<&std::path::Path>,
) -> anyhow::Result<Scraper> {
    for name in FOREIGN {
        if matches.get_flag(&format!("collector.{name}")) {
            tracing::warn!(
                collector = name,
                "imd-exporter has no such collector; flag ignored"
            );
        }
    }
    let ctx = BuildContext {
        paths,
        matches,
        config,
        state_dir,
    };
    let mut entries = Vec::new();
    for spec in ALL {
        if !collector_enabled(matches, config, spec) {
            continue;
        }
        let collector =
            (spec.build)(&ctx).map_err(|e| anyhow::anyhow!("collector {}: {e:#}", spec.name))?;
        let interval: Option<Duration> = config.collectors.get(spec.name).and_then(|c| c.interval);
        entries.push(Entry::new(spec.name, collector, interval));
    }
    Ok(Scraper::new(entries))
}
