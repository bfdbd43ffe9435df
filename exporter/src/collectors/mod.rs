//! Collectors: each reads one part of the system and returns metric
//! families. One file per collector; this module holds the contract they
//! share and the list the flags and the scraper are built from.

use std::path::{Path, PathBuf};

use clap::ArgMatches;

use crate::config::Config;
use crate::exposition::Family;
use crate::paths::Paths;

pub mod process_self;
#[cfg(test)]
pub(crate) mod testutil;
pub mod util;

pub mod cpu;
pub mod diskstats;
pub mod filesystem;
pub mod loadavg;
pub mod logs;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod os;
pub mod pressure;
pub mod processes;
pub mod processgroups;
pub mod stat;
pub mod textfile;
pub mod time;
pub mod uname;

/// Every collector imd-exporter has, in the order of `--help`.
pub const ALL: &[Spec] = &[
    cpu::SPEC,
    diskstats::SPEC,
    filesystem::SPEC,
    loadavg::SPEC,
    logs::SPEC,
    meminfo::SPEC,
    netclass::SPEC,
    netdev::SPEC,
    os::SPEC,
    pressure::SPEC,
    processes::SPEC,
    processgroups::SPEC,
    stat::SPEC,
    textfile::SPEC,
    time::SPEC,
    uname::SPEC,
];

/// node_exporter collectors that imd-exporter does not implement. Their
/// `--collector.NAME` flags are accepted (and ignored with a warning) so that
/// an existing node_exporter command line works unchanged.
pub const FOREIGN: &[&str] = &[
    "arp",
    "bcache",
    "bonding",
    "btrfs",
    "buddyinfo",
    "conntrack",
    "cpufreq",
    "cpu_vulnerabilities",
    "devstat",
    "dmi",
    "drbd",
    "drm",
    "edac",
    "entropy",
    "ethtool",
    "fibrechannel",
    "filefd",
    "hwmon",
    "infiniband",
    "interrupts",
    "ipvs",
    "ksmd",
    "lnstat",
    "logind",
    "mdadm",
    "meminfo_numa",
    "mountstats",
    "netstat",
    "network_route",
    "nfs",
    "nfsd",
    "nvme",
    "perf",
    "powersupplyclass",
    "qdisc",
    "rapl",
    "runit",
    "schedstat",
    "selinux",
    "slabinfo",
    "sockstat",
    "softirqs",
    "softnet",
    "supervisord",
    "sysctl",
    "systemd",
    "tapestats",
    "tcpstat",
    "thermal_zone",
    "timex",
    "udp_queues",
    "vmstat",
    "wifi",
    "xfs",
    "zfs",
    "zoneinfo",
];

/// Looks a collector up by name.
pub fn spec(name: &str) -> Option<&'static Spec> {
    ALL.iter().find(|s| s.name == name)
}

/// What a collector is, how it is switched and how it is built.
pub struct Spec {
    /// Name used in flags (`--collector.NAME`), config keys and the
    /// `collector` label of the scrape self-metrics.
    pub name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether it runs when neither flag nor config says otherwise
    /// (node_exporter's default for the collectors it shares).
    pub default_enabled: bool,
    /// Whether the configuration file asks for this collector by having a
    /// section of its own (e.g. `process_groups`), which turns it on unless
    /// a flag or `collectors.NAME.enabled` says otherwise.
    pub configured: fn(&Config) -> bool,
    /// The collector's own flags, named `--collector.NAME.OPTION`.
    pub flags: fn() -> Vec<clap::Arg>,
    /// Builds the collector from paths, flags and the config file; an error
    /// here stops the exporter at start with the message.
    pub build: fn(&BuildContext) -> anyhow::Result<Box<dyn Collector>>,
}

/// For collectors that no config section turns on.
pub fn not_configured(_: &Config) -> bool {
    false
}

/// A collector's inputs at build time.
pub struct BuildContext<'a> {
    /// Roots of /proc, /sys and /.
    pub paths: &'a Paths,
    /// All parsed command-line flags (a collector reads its own).
    pub matches: &'a ArgMatches,
    /// The configuration file's contents (default when none was given).
    pub config: &'a Config,
    /// Directory for state that must survive restarts (log offsets).
    pub state_dir: Option<&'a Path>,
}

impl BuildContext<'_> {
    /// The value of a string flag of this collector, if given or defaulted.
    pub fn flag(&self, id: &str) -> Option<String> {
        self.matches
            .try_get_one::<String>(id)
            .ok()
            .flatten()
            .cloned()
    }
}

/// The contract every collector keeps.
pub trait Collector: Send + Sync {
    /// Reads the system once and returns this collector's metric families.
    /// An error marks this collector failed for this scrape only.
    fn collect(&self) -> Result<Vec<Family>, CollectError>;
}

/// Longest message of a [`CollectError::Parse`] that is shown whole.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Clips a message to [`MAX_MESSAGE_BYTES`] (at a character boundary), so a
/// huge bad line quoted in it is not logged at every scrape.
fn clip_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... (clipped, {} bytes in all)",
        &message[..end],
        message.len()
    )
    .into()
}

/// Why a collector could not produce its metrics.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content was not as expected. The message is shown clipped:
    /// it may quote a line of the file, which can be megabytes long.
    #[error("parsing {path}: {}", clip_message(.message))]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line when known.
        message: String,
    },
    /// The data this collector reads does not exist on this system (for
    /// example no PSI in an older kernel).
    #[error("no data: {0}")]
    NoData(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}
