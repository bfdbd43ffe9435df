//! Child processes of a test and the small chores around them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::http::http_get_status;

/// What to tell the developer when a required tool is missing.
pub const INSTALL_HINT: &str = "run `bash .ci/test` (the README's test command), which installs \
     the tools the integration tests start (Debian's prometheus, prometheus-alertmanager, \
     prometheus-node-exporter, curl, openssl, ...)";

/// Finds `name` on `PATH`, or fails the test saying how to install it: a
/// missing tool is a failure, never a silent pass.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!("required program `{name}` was not found on PATH; {INSTALL_HINT}")
        })
}

/// A test's scratch dir (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imd-it-")
        .tempdir()
        .expect("creating temp dir")
}

/// Runs a command to completion and returns its output, failing the test
/// only if it cannot start (the caller checks the status).
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// Runs a command to completion and returns its stdout, failing the test
/// (with its output) if it cannot start or exits non-zero.
pub fn run_ok(program: &Path, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{} {args:?} failed with {}:\n{}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command to completion and returns (success, stdout + stderr),
/// for tests that check a tool's verdict either way.
pub fn run_capture(program: &Path, args: &[&str]) -> (bool, String) {
    let out = run(program, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Polls `cond` every 100 ms until it holds, failing after `secs` with `what`.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process that is stopped by PID (SIGTERM, then SIGKILL after a
/// grace period) and reaped when the guard is dropped. Its stdout and
/// stderr go to files in its log dir, so a chatty child never blocks on a
/// full pipe and a failure message can quote what it said.
pub struct Proc {
    name: String,
    child: Option<std::process::Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `program` with `args` in `log_dir`, logging into
    /// `log_dir/<name>.stdout|stderr`; it inherits the test's environment.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, log_dir: &Path) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let child = Command::new(program)
            .args(&args)
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("creating stdout log"))
            .stderr(std::fs::File::create(&stderr).expect("creating stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// The child's process id (while the guard still holds it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The last 4 KiB of what the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let start = s.len().saturating_sub(4096);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }

    /// What the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The child's exit status if it has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (a `kill` name such as `HUP`) to the running child by
    /// PID, failing the test if it has exited or `kill` fails.
    pub fn signal(&mut self, signal: &str) {
        assert!(self.exited().is_none(), "{} has exited", self.name);
        let pid = self.pid().expect("the child was stopped");
        // Not reaped yet, so the PID is still the child's.
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} failed", self.name);
    }

    /// Polls `http://127.0.0.1:port{path}` until it answers 200, failing the
    /// test (with the child's stderr) if the child exits, `timeout` passes,
    /// or the answer comes from a process that is not the child's (another
    /// program took the port first).
    pub fn wait_http_ok(&mut self, port: u16, path: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        while start.elapsed() < timeout {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited with {status} before it was ready\nstderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            match http_get_status(port, path) {
                Ok(200) => {
                    let pid = self.pid().expect("the child is held");
                    if crate::ports::listener_held_by(pid, port) == Some(false) {
                        panic!(
                            "127.0.0.1:{port}{path} answers, but not from {} (pid {pid}): \
                             another process holds the port\nstderr:\n{}",
                            self.name,
                            self.stderr()
                        );
                    }
                    return;
                }
                Ok(s) => last = format!("HTTP {s}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} was not ready on 127.0.0.1:{port}{path} within {timeout:?} (last: {last})\nstderr:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Kills the child at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops the child now (SIGTERM by PID, SIGKILL after 5 s) and returns
    /// its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SIGTERM through kill(1): the child is not reaped yet, so its PID
        // cannot have been reused.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server in this test process that answers every request with 200.
    fn answer_ok(listener: std::net::TcpListener) {
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
    }

    #[test]
    fn a_stranger_answering_on_the_port_fails_the_wait() {
        let dir = tempdir();
        let port = crate::free_port();
        answer_ok(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        let sleep = require_tool("sleep");
        let mut child = Proc::spawn("sleeper", &sleep, ["30"], dir.path());
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child.wait_http_ok(port, "/", Duration::from_secs(5))
        }))
        .expect_err("a port held by this test process is not the sleeper's");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("another process holds the port"), "{msg}");
    }
}
