//! `loadavg`: the 1, 5 and 15 minute load averages from /proc/loadavg.

use super::util::{parse_error, read_string};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "loadavg",
    help: "Load averages (node_load1, node_load5, node_load15)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(LoadAvg {
        paths: ctx.paths.clone(),
    }))
}

struct LoadAvg {
    paths: Paths,
}

impl Collector for LoadAvg {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("loadavg");
        let text = read_string(&path)?;
        let fields: Vec<f64> = text
            .split_whitespace()
            .take(3)
            .map(|f| f.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| parse_error(&path, 1, e))?;
        if fields.len() != 3 {
            return Err(parse_error(&path, 1, "expected three load averages"));
        }
        Ok([("1", "1m"), ("5", "5m"), ("15", "15m")]
            .iter()
            .zip(fields)
            .map(|((n, span), v)| {
                let mut f = Family::gauge(format!("node_load{n}"), format!("{span} load average."));
                f.push_value(v);
                f
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_averages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loadavg"), "0.52 0.58 0.59 1/467 12345\n").unwrap();
        let c = LoadAvg {
            paths: Paths {
                procfs: dir.path().into(),
                ..Paths::default()
            },
        };
        let f = c.collect().unwrap();
        assert_eq!(f[0].name, "node_load1");
        assert_eq!(f[0].samples[0].value, 0.52);
        assert_eq!(f[2].name, "node_load15");
        assert_eq!(f[2].samples[0].value, 0.59);
        std::fs::write(dir.path().join("loadavg"), "garbage\n").unwrap();
        assert!(matches!(c.collect(), Err(CollectError::Parse { .. })));
    }
}
