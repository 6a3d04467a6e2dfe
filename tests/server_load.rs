//! Load on `ragafusion serve` (loopback, tiny pipeline): 32 clients at
//! once each submit a job and follow its events to the end. Every job must
//! finish, no answer may be a 5xx, and the server's peak resident memory
//! stays bounded (printed; docs/server.md records it).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::server::{sd_tiny, Server};
use serde_json::json;

const CLIENTS: usize = 32;
/// The server's peak resident memory allowed, MiB: the tiny pipeline is a
/// few MB; this bounds what 32 connections, their event streams and the
/// queue may add.
const MAX_PEAK_RSS_MIB: u64 = 1024;
/// The whole run's limit.
const DEADLINE: Duration = Duration::from_secs(600);

#[test]
fn thirty_two_clients_each_run_a_job_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let model = sd_tiny().display().to_string();
    let server = Arc::new(Server::start(
        tmp.path(),
        &["--model", &model, "--queue", &CLIENTS.to_string()],
    ));
    let start = Arc::new(Barrier::new(CLIENTS));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (server, start) = (Arc::clone(&server), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let (code, sub) = server.submit(&json!({
                    "kind": "generate", "prompt": format!("mohanam raga alapana {i}"),
                    "seed": i, "steps": 1, "seconds": 0.5, "name": format!("c{i}"),
                }));
                assert_eq!(code, 202, "client {i}: {sub}");
                let id = sub["id"].as_u64().unwrap();
                let events = server.events(id);
                let last = events.last().map(|(n, _)| n.clone());
                assert_eq!(last.as_deref(), Some("done"), "client {i}: {events:?}");
                let (code, job) = server.get_json(&format!("/api/jobs/{id}"));
                assert_eq!(code, 200);
                assert_eq!(job["files"].as_array().unwrap().len(), 3, "{job}");
                id
            })
        })
        .collect();
    let mut ids: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let elapsed = t0.elapsed();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CLIENTS, "every job got its own id");
    assert!(elapsed < DEADLINE, "{elapsed:?}");
    let (code, list) = server.get_json("/api/jobs");
    assert_eq!(code, 200);
    let jobs = list["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{list}");
    let peak_kb = server.peak_rss_kb().expect("the server's /proc status");
    println!(
        "{CLIENTS} clients: all done in {:.1} s; server peak RSS {:.0} MiB",
        elapsed.as_secs_f64(),
        peak_kb as f64 / 1024.0
    );
    assert!(
        peak_kb / 1024 < MAX_PEAK_RSS_MIB,
        "peak RSS {peak_kb} kB is over {MAX_PEAK_RSS_MIB} MiB"
    );
}
