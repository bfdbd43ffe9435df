//! Loopback ports for the servers a test starts, and who is listening on
//! them.
//!
//! A port picked by binding port 0 comes from the kernel's ephemeral range,
//! the same range every other program's port-0 bind and every outgoing
//! connection draws from; between the pick and the server's own bind,
//! another process (a test of another build on the same host) can take it,
//! and a readiness probe would then be answered by a stranger. Ports are
//! therefore drawn at random from below the ephemeral range, which nothing
//! gets without asking for the number, and a started server is checked to
//! be the one holding its port.

use std::collections::HashSet;
use std::sync::Mutex;

/// Lowest port handed out: above the well-known and registered ports
/// exporters and Prometheus use by default (9090, 9093, 9100, ...).
const LOWEST: u16 = 20_000;

/// Ports this test process has handed out already (tests run on threads
/// of one process, and a port is for one server).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago, drawn at random from below
/// the kernel's ephemeral range (so neither a port-0 bind nor an outgoing
/// connection of another program takes it before the server binds it),
/// never the same twice in one test process.
pub fn free_port() -> u16 {
    let top = ephemeral_low().unwrap_or(32_768);
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    if top > LOWEST + 1_000 {
        for _ in 0..200 {
            let port = fastrand::u16(LOWEST..top);
            if !handed.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed.insert(port);
                return port;
            }
        }
    }
    // A host whose ephemeral range starts low: the kernel's pick.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = l.local_addr().expect("local address").port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range, if it can be read.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Whether the TCP socket listening on `port` (any local address) belongs
/// to process `pid` or one of its descendants; `None` when this cannot be
/// told (no listener found, or no `/proc`).
pub fn listener_held_by(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let family = descendants(pid);
    Some(family.iter().any(|p| {
        std::fs::read_dir(format!("/proc/{p}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| {
                let t = target.to_string_lossy();
                t.strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .is_some_and(|inode| inodes.contains(inode))
            })
    }))
}

/// Socket inodes in LISTEN state on `port` from `/proc/net/tcp` and
/// `/proc/net/tcp6`.
fn listening_inodes(port: u16) -> HashSet<String> {
    let want = format!("{port:04X}");
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
            if local_port == Some(want.as_str()) && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9) {
                    inodes.insert((*inode).to_string());
                }
            }
        }
    }
    inodes
}

/// `pid` and every process whose chain of parents reaches it.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and ')'.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut family = vec![pid];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let top = ephemeral_low().unwrap_or(32_768);
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        if top > LOWEST + 1_000 {
            assert!(
                ports.iter().all(|&p| (LOWEST..top).contains(&p)),
                "{ports:?}"
            );
        }
    }

    #[test]
    fn a_listener_is_told_apart_from_a_strangers() {
        let port = free_port();
        let _l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        // This test process holds it: it is "ours" for our own pid...
        assert_eq!(listener_held_by(std::process::id(), port), Some(true));
        // ...and not for a child that never touched it.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(listener_held_by(child.id(), port), Some(false));
        let _ = child.kill();
        let _ = child.wait();
        // No listener at all: cannot tell.
        let unused = free_port();
        assert_eq!(listener_held_by(std::process::id(), unused), None);
    }
}
