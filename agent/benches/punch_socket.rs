//! Confirmed punches per second at the intake socket: the real socket server, committer and
//! durable redb buffer (in a temporary directory on the machine's disk), with clients that
//! pipeline their requests on one or several connections, and one that waits for each answer
//! (one durable commit per punch). Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p vouch-agent --bench punch_socket` (set BENCH_DIR to put the buffer on the
//! disk to measure; the default is the package directory, not a tmpfs).

// A benchmark, not an input-driven path: any failure should stop it loudly.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vouch_agent::punch::buffer::Buffer;
use vouch_agent::punch::{committer, intake};
use vouch_protocol::punch::BootId;

fn line(c: usize, i: usize) -> String {
    format!(r#"{{"op":"punch","employee":"C{c}-{i}","kind":"in","method":"card"}}"#) + "\n"
}

/// `per` punches on one connection, all written before the answers are read.
fn pipelined(socket: &Path, c: usize, per: usize) -> usize {
    let s = UnixStream::connect(socket).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let all: String = (0..per).map(|i| line(c, i)).collect();
        w.write_all(all.as_bytes()).expect("write");
    });
    let mut r = BufReader::new(s);
    let mut ok = 0;
    let mut answer = String::new();
    for _ in 0..per {
        answer.clear();
        r.read_line(&mut answer).expect("read");
        ok += usize::from(answer.contains(r#""ok":true"#));
    }
    writer.join().expect("writer");
    ok
}

/// `n` punches, each sent only after the previous one was answered.
fn one_by_one(socket: &Path, n: usize) -> usize {
    let s = UnixStream::connect(socket).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    let mut ok = 0;
    for i in 0..n {
        w.write_all(line(0, i).as_bytes()).expect("write");
        answer.clear();
        r.read_line(&mut answer).expect("read");
        ok += usize::from(answer.contains(r#""ok":true"#));
    }
    ok
}

fn report(what: &str, ok: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what:<44} {ok:>7} confirmed in {secs:>6.2} s = {:>8.0} punches/s",
        ok as f64 / secs
    );
}

fn main() {
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("tempdir");
    let buffer = Arc::new(
        Buffer::open(
            &dir.path().join("punches.redb"),
            "bench-1".parse().expect("id"),
        )
        .expect("buffer"),
    );
    let meta = buffer.meta().expect("meta");
    let (last, _rx) = tokio::sync::watch::channel(0);
    let settings = committer::Settings {
        boot: BootId([9; 16]),
        capacity: u64::MAX,
        retention_secs: 86_400,
        prune_step: committer::PRUNE_STEP,
        prune_every: committer::PRUNE_EVERY,
    };
    let (handle, _thread) = committer::spawn(buffer, meta, settings, last).expect("committer");
    let socket = dir.path().join("punch.sock");
    let listener = intake::bind(&socket).expect("bind");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(async move {
        let l = tokio::net::UnixListener::from_std(listener).expect("listener");
        intake::serve(l, handle).await;
    });

    let start = Instant::now();
    let ok = one_by_one(&socket, 500);
    report("1 connection, one punch at a time", ok, start);

    let start = Instant::now();
    let ok = pipelined(&socket, 0, 20_000);
    report("1 connection, 20000 pipelined", ok, start);

    for conns in [8usize, 32] {
        let per = 80_000 / conns;
        let start = Instant::now();
        let workers: Vec<_> = (0..conns)
            .map(|c| {
                let socket = socket.clone();
                std::thread::spawn(move || pipelined(&socket, c, per))
            })
            .collect();
        let ok = workers.into_iter().map(|w| w.join().expect("worker")).sum();
        report(&format!("{conns} connections x {per} pipelined"), ok, start);
    }
    let concurrent = 32usize;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrent)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || one_by_one(&socket, 200))
        })
        .collect();
    let ok = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    report("32 connections, each one punch at a time", ok, start);
}
