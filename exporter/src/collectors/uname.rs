//! `uname`: the kernel's identity as labels of `node_uname_info`.

use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "uname",
    help: "Kernel name, release, version, machine and host name (node_uname_info)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(_ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Uname))
}

struct Uname;

impl Collector for Uname {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let u =
            nix::sys::utsname::uname().map_err(|e| CollectError::Other(format!("uname: {e}")))?;
        let s = |o: &std::ffi::OsStr| o.to_string_lossy().into_owned();
        let mut f = Family::gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
        );
        f.push(
            [
                ("domainname", s(u.domainname())),
                ("machine", s(u.machine())),
                ("nodename", s(u.nodename())),
                ("release", s(u.release())),
                ("sysname", s(u.sysname())),
                ("version", s(u.version())),
            ],
            1.0,
        );
        Ok(vec![f])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_linux() {
        let f = Uname.collect().unwrap();
        let labels = &f[0].samples[0].labels;
        assert!(labels.iter().any(|(k, v)| k == "sysname" && v == "Linux"));
    }
}
