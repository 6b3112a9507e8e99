//! `server::run` in-process, as a test starts it: the HTTP listener bound on port 0 by the test,
//! a managed Mosquitto on a free loopback port, readiness awaited through `/v1/health`'s
//! `ready`, then the shutdown future completed. Guards that `run` returns only after every task
//! and thread it started has ended: the listener's port is free again, the managed broker is
//! stopped, and the store is closed (redb locks an open database file, so reopening it from
//! here fails while anything of the old `run` still holds the engine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vouch_test_kit::http::http_get;
use vouch_test_kit::process::free_port;
use vouch_verifier::config::{RunArgs, ServerConfig};
use vouch_verifier::server::{self, Listeners};
use vouch_verifier::store::Store;

/// A verifier on `data` with its managed broker on a free loopback port.
fn managed_on_a_free_port(data: &Path) -> ServerConfig {
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    config(
        data,
        RunArgs {
            mqtt_listen: Some(listen.parse().unwrap()),
            ..RunArgs::default()
        },
    )
}

fn config(data: &Path, mqtt: RunArgs) -> ServerConfig {
    let args = RunArgs {
        data: Some(data.to_owned()),
        ..mqtt
    };
    let mut cfg = ServerConfig::resolve(&args).unwrap();
    cfg.workers = 2;
    // Simulated terminals have no EK certificate; not what these tests are about.
    cfg.engine.require_ek_cert = false;
    cfg
}

/// `GET /v1/health`: status code and JSON body (status 0 when nothing answered).
async fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    tokio::task::spawn_blocking(move || http_get(addr.port(), "/v1/health"))
        .await
        .unwrap()
}

/// Polls `/v1/health` until `pred` holds for it, or panics after 60 s with the last answer.
async fn wait_health(
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(u16, &serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let start = Instant::now();
    loop {
        let (code, body) = health(addr).await;
        if pred(code, &body) {
            return (code, body);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; last health: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `run` on a port-0 HTTP listener; returns its address, the shutdown trigger and the
/// task running `run`.
async fn start(
    cfg: ServerConfig,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let running = tokio::spawn(server::run(cfg, Listeners { http }, shutdown));
    (addr, stop, running)
}

/// Completes the shutdown future and waits for `run` to return (60 s at most).
async fn stop(stop: oneshot::Sender<()>, running: tokio::task::JoinHandle<anyhow::Result<()>>) {
    stop.send(()).unwrap();
    let returned = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("run did not return within 60 s of shutdown");
    returned.unwrap().unwrap();
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_becomes_ready_and_on_shutdown_joins_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let cfg = config(
        &data,
        RunArgs {
            mqtt_listen: Some(mqtt),
            ..RunArgs::default()
        },
    );
    let (addr, trigger, running) = start(cfg).await;

    let (code, body) = wait_health(addr, "ready", |_, b| b["ready"] == true).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["broker"]["mqtt_subscribed"], true, "{body}");
    assert_eq!(body["store"]["ok"], true, "{body}");
    let broker_pid = body["broker"]["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(broker_pid));
    // Positive control for the last check: while `run` holds the store, it cannot be reopened.
    assert!(Store::open(&data.join("vouch.redb")).is_err());

    stop(trigger, running).await;

    // Every task is gone: the HTTP port and the broker's port can be bound again ...
    std::net::TcpListener::bind(addr).expect("the HTTP port is still held after run returned");
    std::net::TcpListener::bind(mqtt).expect("the broker's port is still held after run returned");
    assert!(!pid_alive(broker_pid), "the managed Mosquitto outlived run");
    assert!(!data.join("broker/mosquitto.pid").exists());
    // ... and every thread: the last engine reference (and with it the store) is dropped.
    Store::open(&data.join("vouch.redb")).expect("the store is still open after run returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_and_not_ready_while_the_broker_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An external broker on a port nothing listens on: the MQTT shell keeps retrying.
    let cfg = config(
        &data,
        RunArgs {
            mqtt_url: Some(format!("mqtt://127.0.0.1:{}", free_port().unwrap())),
            ..RunArgs::default()
        },
    );
    let (addr, trigger, running) = start(cfg).await;

    let (code, body) = wait_health(addr, "an answer", |code, _| code != 0).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not connected"),
        "{body}"
    );

    // Shutdown also ends a shell that is waiting to reconnect.
    stop(trigger, running).await;
    std::net::TcpListener::bind(addr).expect("the HTTP port is still held after run returned");
    Store::open(&data.join("vouch.redb")).expect("the store is still open after run returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_failure_returns_the_error_and_releases_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = managed_on_a_free_port(&data);
    let missing = dir.path().join("no-such-mosquitto");
    if let vouch_verifier::config::BrokerChoice::Managed(m) = &mut cfg.broker {
        m.mosquitto = missing.clone();
    }
    let (addr, _trigger, running) = start(cfg).await;
    let err = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("run did not return after its broker failed to start")
        .unwrap()
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    std::net::TcpListener::bind(addr).expect("the HTTP port is still held after run failed");
    Store::open(&data.join("vouch.redb")).expect("the store is still open after run failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_broker_starts_returns_ok_and_kills_the_half_started_child() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A "broker" that starts but never listens: `run` waits for it (up to 30 s, then an error).
    let fake = dir.path().join("mosquitto");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 120\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = managed_on_a_free_port(&data);
    if let vouch_verifier::config::BrokerChoice::Managed(m) = &mut cfg.broker {
        m.mosquitto = fake;
    }
    let (addr, trigger, running) = start(cfg).await;
    let pid_file = data.join("broker/mosquitto.pid");
    let start = Instant::now();
    let pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no broker pid file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(pid_alive(pid));
    // Shutdown now: `run` returns Ok (not the "did not start listening" error after 30 s).
    stop(trigger, running).await;
    let start = Instant::now();
    while pid_alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the half-started broker {pid} outlived run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::net::TcpListener::bind(addr).expect("the HTTP port is still held after run returned");
    Store::open(&data.join("vouch.redb")).expect("the store is still open after run returned");
}
