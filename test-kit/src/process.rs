//! Child processes that are ended by their own pid: spawn with output to a log file, stop with
//! SIGTERM and, after a grace period, SIGKILL. Used by the demo and the test suites, which
//! must leave no process behind and must never signal a process they did not start.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child process and the file its stdout and stderr go to.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> std::io::Result<Self> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns whether it exited on SIGTERM.
    pub fn stop_within(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL at once (a crash, the OOM killer, a power cut: no chance to clean up), then
    /// reaps the child. A child that already exited is only reaped.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`Proc::stop_within`] with a 10-second grace period.
    pub fn stop(&mut self) -> bool {
        self.stop_within(Duration::from_secs(10))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Panics with `what`, the exit status and both output streams unless `out` is a success.
pub fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on loopback `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_child_by_pid_and_captures_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut p = Proc::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo started; exec sleep 60"]),
            &log,
        )
        .unwrap();
        assert!(p.alive());
        // Regression: stopping before the shell had printed raced the output assertion.
        let start = Instant::now();
        while !p.log().contains("started") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the child never wrote its line"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            p.stop_within(Duration::from_secs(5)),
            "sleep exits on SIGTERM"
        );
        assert!(!p.alive());
    }

    #[test]
    fn kill9_ends_a_child_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stubborn.log");
        let mut p = Proc::spawn(
            "sh",
            Command::new("sh").args([
                "-c",
                "trap '' TERM; echo started; while :; do sleep 1; done",
            ]),
            &log,
        )
        .unwrap();
        let start = Instant::now();
        while !p.log().contains("started") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the child never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p.kill9();
        assert!(!p.alive());
        assert!(p.pid().is_none(), "a killed child is reaped and forgotten");
    }

    #[test]
    fn have_finds_sh_and_not_nonsense() {
        assert!(have("sh"));
        assert!(!have("definitely-not-a-program-vouch"));
    }
}
