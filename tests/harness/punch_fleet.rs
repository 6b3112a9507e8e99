//! The set-up every punch scenario starts from: a verifier (managed or external broker), one
//! terminal on its own swtpm, enrolled and trusted under a captured policy, and its daemon
//! running with the scenario's punch flags and serving its punch socket.

use std::fs;
use std::time::Duration;

use tempfile::TempDir;

use crate::agent::{PunchFlags, Terminal};
use crate::procs::{BrokerKind, Proc, Swtpm, Verifier, swtpm};
use crate::punch::PunchClient;
use crate::wait_for;

/// How long a scenario waits for the mirror to catch up after its last fault.
pub const CATCH_UP: Duration = Duration::from_secs(180);

#[derive(Debug)]
pub struct PunchFleet {
    /// Declared first so it is dropped (stopped) first, while its verifier still runs.
    pub daemon: Option<Proc>,
    pub v: Verifier,
    pub t: Terminal,
    pub flags: PunchFlags,
    _tpm: Swtpm,
    /// Dropped last: the processes above are ended before their directory goes.
    pub dir: TempDir,
}

impl PunchFleet {
    /// A trusted terminal `id` whose daemon runs with `flags` (attestation every 30 s, so
    /// attestation traffic runs beside the punches).
    pub fn start(kind: BrokerKind, id: &str, flags: PunchFlags) -> Self {
        Self::start_with(kind, id, flags, "")
    }

    /// [`PunchFleet::start`] with extra lines for the verifier's TOML config file.
    pub fn start_with(kind: BrokerKind, id: &str, flags: PunchFlags, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tpm_dir = dir.path().join(format!("tpm-{id}"));
        fs::create_dir_all(&tpm_dir).unwrap();
        let tpm = swtpm(&tpm_dir);
        let v = Verifier::start_with(dir.path(), kind, extra_config);
        let t = Terminal::new(dir.path(), id, &tpm, &v, "firmware v1");
        t.enroll(&v, "T-100");
        t.attest_expect(4);
        v.capture(id);
        t.attest_expect(0);
        assert_eq!(v.device(id)["state"], "trusted");
        let mut f = Self {
            daemon: None,
            v,
            t,
            flags,
            _tpm: tpm,
            dir,
        };
        f.start_daemon();
        f
    }

    /// Starts the daemon and waits until its punch socket answers.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is running already");
        self.daemon = Some(self.t.spawn_daemon_with(30, &self.flags));
        let _ = PunchClient::wait_connect(&self.t.punch_socket()).status();
    }

    /// Kills the daemon with SIGKILL (power cut, crash).
    pub fn kill9_daemon(&mut self) {
        self.daemon.take().expect("the daemon is running").kill9();
    }

    /// Stops the daemon with SIGTERM; panics if it does not exit on it.
    pub fn stop_daemon(&mut self) {
        let mut d = self.daemon.take().expect("the daemon is running");
        assert!(d.stop(), "the agent did not exit on SIGTERM");
    }

    pub fn client(&self) -> PunchClient {
        PunchClient::wait_connect(&self.t.punch_socket())
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        self.daemon.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Waits until the mirror's head reached at least `seq` (mid-stream progress).
    pub fn wait_head_at_least(&self, seq: u64, timeout: Duration) {
        wait_for(
            timeout,
            &format!("the mirror's head to reach {seq}"),
            || (crate::mirror::mirror_view(&self.v, &self.t.id).head_seq >= seq).then_some(()),
        );
    }
}

impl PunchFleet {
    /// Crashes, outages and resends are not tamper: the device is still trusted, nothing was
    /// rejected as `tamper` and no punch batch was audited as rejected.
    pub fn assert_no_tamper(&self) {
        let id = &self.t.id;
        let d = self.v.device(id);
        assert_eq!(d["state"], "trusted", "{d}");
        assert_eq!(self.v.rejected("tamper"), 0, "{}", self.v.stats());
        let audit = self.v.ctl_json(&["audit", "--json"]);
        let rejected: Vec<_> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["device"] == id.as_str() && e["action"] == "punches_rejected")
            .collect();
        assert!(rejected.is_empty(), "{rejected:?}");
    }
}
