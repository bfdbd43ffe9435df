//! Helpers for the collectors' unit tests.

use super::{BuildContext, Collector, Spec};
use crate::config::Config;
use crate::exposition::Family;
use crate::paths::Paths;

/// Builds a collector as the exporter would, from its own flags given as
/// command-line words (e.g. `["--collector.netdev.device-include=eth0"]`).
pub fn build_with(spec: &Spec, paths: &Paths, args: &[&str]) -> anyhow::Result<Box<dyn Collector>> {
    let matches = clap::Command::new("t")
        .args((spec.flags)())
        .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))?;
    (spec.build)(&BuildContext {
        paths,
        matches: &matches,
        config: &Config::default(),
        state_dir: None,
    })
}

/// The samples of family `name` as (value of label `label`, value) pairs.
pub fn by_label<'a>(fams: &'a [Family], name: &str, label: &str) -> Vec<(&'a str, f64)> {
    fams.iter()
        .find(|f| f.name == name)
        .map(|f| {
            f.samples
                .iter()
                .filter_map(|s| {
                    let v = s.labels.iter().find(|(k, _)| k == label)?;
                    Some((v.1.as_str(), s.value))
                })
                .collect()
        })
        .unwrap_or_default()
}
