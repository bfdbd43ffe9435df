//! The serving process's own resource use (`process_*`), as every
//! Prometheus client library exports it. Not a switchable collector:
//! `--web.disable-exporter-metrics` leaves it out.

use crate::exposition::Family;

/// `process_cpu_seconds_total`, memory, open and maximum file descriptors and
/// start time of the current process. Empty when /proc/self is unreadable.
pub fn families() -> Vec<Family> {
    let Ok(me) = procfs::process::Process::myself() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let tps = super::util::ticks_per_second();
    if let Ok(stat) = me.stat() {
        let mut cpu = Family::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        cpu.push_value((stat.utime + stat.stime) as f64 / tps);
        out.push(cpu);
        let mut vm = Family::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        );
        vm.push_value(stat.vsize as f64);
        out.push(vm);
        let page = procfs::page_size() as f64;
        let mut rss = Family::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        rss.push_value(stat.rss as f64 * page);
        out.push(rss);
        // The start time never changes; the boot time it is counted from
        // would cost a read of /proc/stat at every scrape to learn again.
        // A failed read is tried again at the next scrape.
        static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let start_time = START.get().copied().or_else(|| {
            let boot = procfs::boot_time_secs().ok()?;
            Some(*START.get_or_init(|| boot as f64 + stat.starttime as f64 / tps))
        });
        if let Some(value) = start_time {
            let mut start = Family::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            );
            start.push_value(value);
            out.push(start);
        }
    }
    if let Ok(n) = me.fd_count() {
        let mut fds = Family::gauge("process_open_fds", "Number of open file descriptors.");
        fds.push_value(n as f64);
        out.push(fds);
    }
    if let Ok(limits) = me.limits() {
        let value = |l: procfs::process::LimitValue| match l {
            procfs::process::LimitValue::Value(v) => v as f64,
            // Go's client reports "unlimited" as the largest uint64.
            procfs::process::LimitValue::Unlimited => u64::MAX as f64,
        };
        let mut max = Family::gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        );
        max.push_value(value(limits.max_open_files.soft_limit));
        out.push(max);
        let mut vmax = Family::gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
        );
        vmax.push_value(value(limits.max_address_space.soft_limit));
        out.push(vmax);
    }
    out
}
