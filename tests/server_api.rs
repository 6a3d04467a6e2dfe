//! `ragafusion serve` over HTTP on an ephemeral loopback port, with the
//! tiny diffusion pipeline: every endpoint, the order of a job's events,
//! cancel, a full queue, bad bodies answered with JSON errors, the token
//! and Host checks, a restart mid-job, resume, and a scored video.

mod common;

use std::path::Path;

use common::make_video;
use common::server::{sd_tiny, Server};
use serde_json::{json, Value};

fn clip() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav"))
        .unwrap()
}

fn model_args() -> Vec<String> {
    vec!["--model".into(), sd_tiny().display().to_string()]
}

fn start(data: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<&str> = Vec::new();
    let m = model_args();
    args.extend(m.iter().map(String::as_str));
    args.extend(extra);
    Server::start(data, &args)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Checks a finished job's events: a start, progress that goes back
/// within a stage only to start it again (the next clip), and `done` last
/// with the files.
fn assert_ran_in_order(events: &[(String, Value)]) -> Vec<String> {
    let n = names(events);
    assert!(matches!(n[0], "queued" | "running"), "{n:?}");
    assert_eq!(*n.last().unwrap(), "done", "{n:?}");
    let mut last: Option<(String, u64)> = None;
    for (name, data) in events {
        if name == "progress" {
            let stage = data["stage"].as_str().unwrap().to_string();
            let step = data["step"].as_u64().unwrap();
            let f = data["fraction"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&f), "{data}");
            if let Some((s, prev)) = &last {
                if *s == stage {
                    assert!(step >= *prev || step == 0, "{stage}: {prev} then {step}");
                }
            }
            last = Some((stage, step));
        }
    }
    assert!(n.contains(&"progress"), "{n:?}");
    let files = events.last().unwrap().1["files"].as_array().unwrap();
    files
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_endpoint_answers_and_jobs_run_to_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports/run-1");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(
        reports.join("report.html"),
        "<html><body>compare</body></html>",
    )
    .unwrap();
    let reports_arg = tmp.path().join("reports").display().to_string();
    let s = start(&tmp.path().join("data"), &["--reports", &reports_arg]);

    let (code, health) = s.get_json("/api/health");
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    let (_, models) = s.get_json("/api/models");
    assert_eq!(models["models"][0]["name"], "sd-tiny");
    assert_eq!(models["models"][0]["backend"], "diffusion");
    let (_, vocab) = s.get_json("/api/vocabulary");
    assert!(vocab["ragas"].as_array().unwrap().len() >= 160);
    assert!(!vocab["talas"].as_array().unwrap().is_empty());
    let (_, found) = s.get_json("/api/vocabulary/ragas?q=Bhoopali");
    assert_eq!(found["ragas"][0]["name"], "Mohanam", "{found}");
    let (_, cap) = s.get_json("/api/caption?raga=thodi&instrument=violin&shruti=D");
    let caption = cap["caption"].as_str().unwrap();
    assert!(
        caption.contains("Todi") || caption.contains("todi"),
        "{caption}"
    );
    assert!(caption.contains("shruti D"), "{caption}");
    let (code, bad) = s.get_json("/api/caption?raga=notaraga");
    assert_eq!((code, bad["field"].as_str()), (400, Some("raga")));

    // generate, and follow its events
    let (code, sub) = s.submit(&json!({"kind": "generate", "prompt": "todi raga alapana",
                                       "seed": 3, "steps": 2, "name": "t"}));
    assert_eq!(code, 202, "{sub}");
    let id = sub["id"].as_u64().unwrap();
    let events = s.events(id);
    let mut files = assert_ran_in_order(&events);
    files.sort();
    assert_eq!(files, ["t.json", "t.png", "t.wav"]);
    assert!(names(&events).contains(&"output"));
    let (code, wav) = s.get_bytes(&format!("/api/jobs/{id}/files/t.wav"));
    assert_eq!(code, 200);
    assert_eq!(&wav[..4], b"RIFF");
    let part = s.raw(&format!(
        "GET /api/jobs/{id}/files/t.wav HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-3\r\n\
         Connection: close\r\n\r\n"
    ));
    assert!(part.starts_with("HTTP/1.1 206"), "{part}");
    let lower = part.to_lowercase();
    assert!(
        lower.contains(&format!("content-range: bytes 0-3/{}", wav.len())),
        "{part}"
    );
    assert!(part.ends_with("\r\n\r\nRIFF"), "{part}");
    let (_, png) = s.get_bytes(&format!("/api/jobs/{id}/files/t.png"));
    assert_eq!(&png[1..4], b"PNG");
    let (_, sidecar) = s.get_json(&format!("/api/jobs/{id}/files/t.json"));
    assert_eq!(sidecar["seed"], 3, "{sidecar}");
    let (_, job) = s.get_json(&format!("/api/jobs/{id}"));
    assert_eq!(job["state"], "done");
    assert_eq!(job["settings"]["prompt"], "todi raga alapana");
    // a finished job's events: just the end
    assert_eq!(names(&s.events(id)), ["done"]);

    // an upload, then analyze and audio-to-audio on it
    let (code, up) = s.upload("clip.wav", &clip());
    assert_eq!(code, 201, "{up}");
    assert_eq!(up["kind"], "audio");
    let input = up["id"].as_str().unwrap();
    let (code, sub) = s.submit(&json!({"kind": "analyze", "input": input, "raga": "kalyani"}));
    assert_eq!(code, 202, "{sub}");
    let analyze = sub["id"].as_u64().unwrap();
    let files = assert_ran_in_order(&s.events(analyze));
    assert_eq!(files, ["analysis.json", "analysis.png"]);
    let (_, facts) = s.get_json(&format!("/api/jobs/{analyze}/files/analysis.json"));
    assert_eq!(facts["top"].as_array().unwrap().len(), 5, "{facts}");
    assert!(facts["tonic"]["hz"].as_f64().unwrap() > 40.0);
    assert_eq!(facts["adherence"]["raga"], "Kalyani");

    let (code, sub) = s.submit(&json!({"kind": "audio-to-audio", "input": input,
        "prompt": "kalyani raga on flute", "strength": 0.5, "steps": 2, "name": "a2a"}));
    assert_eq!(code, 202, "{sub}");
    let files = assert_ran_in_order(&s.events(sub["id"].as_u64().unwrap()));
    assert!(files.contains(&"a2a.wav".to_string()), "{files:?}");

    let (code, sub) = s.submit(&json!({"kind": "interpolate", "from": "todi raga:1",
        "to": "kalyani raga:2", "steps": 2, "inference_steps": 1, "seconds": 1}));
    assert_eq!(
        (code, sub["field"].as_str()),
        (400, Some("seconds")),
        "{sub}"
    );
    let (code, sub) = s.submit(&json!({"kind": "interpolate", "from": "todi raga:1",
        "to": "kalyani raga:2", "steps": 2, "inference_steps": 1, "name": "walk"}));
    assert_eq!(code, 202, "{sub}");
    let files = assert_ran_in_order(&s.events(sub["id"].as_u64().unwrap()));
    assert!(files.len() >= 3, "two clips and the joined file: {files:?}");

    let (_, list) = s.get_json("/api/jobs");
    let ids: Vec<u64> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let (_, reports) = s.get_json("/api/reports");
    let r = &reports["reports"][0];
    assert_eq!(r["path"], "run-1/report.html");
    let answer = s.raw(&format!(
        "GET /api/reports/{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        r["id"].as_str().unwrap()
    ));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer
        .to_lowercase()
        .contains("content-security-policy: sandbox"));
    assert!(answer.contains("compare"));

    let (code, page) = s.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("ragafusion studio"));
    let (code, js) = s.get("/app.js");
    assert!(code == 200 && js.contains("EventSource"));
    let (code, missing) = s.get_json("/api/nothing-here");
    assert_eq!((code, missing["error"].is_string()), (404, true));
}

#[test]
fn bad_requests_get_json_errors_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path(), &["--max-upload-mb", "1"]);
    let cases = [
        (json!({"kind": "transmogrify", "prompt": "x"}), "kind"),
        (json!({"prompt": "x"}), "kind"),
        (
            json!({"kind": "generate", "prompt": "x", "seed": "seven"}),
            "seed",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "steps": -2}),
            "steps",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "guidance": "high"}),
            "guidance",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "steps": 0}),
            "steps",
        ),
        (
            json!({"kind": "generate", "prompt": "kalyani ".repeat(2000)}),
            "prompt",
        ),
        (json!({"kind": "generate"}), "prompt"),
        (
            json!({"kind": "generate", "prompt": "x", "colour": "red"}),
            "colour",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "out": "/etc"}),
            "out",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "model": "../../x"}),
            "model",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "name": "../evil"}),
            "name",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "backend": "musicgen"}),
            "backend",
        ),
        (
            json!({"kind": "generate", "prompt": "x", "tonic": "Q"}),
            "tonic",
        ),
        (
            json!({"kind": "analyze", "input": "../../etc/passwd"}),
            "input",
        ),
        (
            json!({"kind": "analyze", "input": "0123456789abcdef.wav"}),
            "input",
        ),
        (
            json!({"kind": "interpolate", "from": "x", "to": "y:1"}),
            "from",
        ),
        (json!({"kind": "audio-to-audio", "prompt": "x"}), "input"),
        (json!(["generate"]), "kind"),
    ];
    for (body, field) in cases {
        let (code, e) = s.submit(&body);
        assert_eq!(code, 400, "{body}: {e}");
        assert_eq!(e["field"].as_str(), Some(field), "{body}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let (code, e) = s.post("/api/jobs", "application/json", b"{not json");
    assert_eq!((code, e["field"].as_str()), (400, Some("body")));
    let (code, e) = s.post("/api/jobs", "application/json", &vec![b' '; 3 << 20]);
    assert_eq!(code, 413, "{e}");
    assert!(e["error"].is_string());

    // uploads: checked by content and size
    let (code, e) = s.upload("song.wav", b"#!/bin/sh\nrm -rf /\n");
    assert_eq!((code, e["field"].as_str()), (415, Some("file")), "{e}");
    let mut big = clip();
    big.resize(1_500_000, 0);
    let (code, e) = s.upload("big.wav", &big);
    assert_eq!((code, e["field"].as_str()), (413, Some("file")), "{e}");
    let leftovers = std::fs::read_dir(tmp.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "refused uploads leave nothing behind");

    // files only by job and listed name
    let (code, sub) = s.submit(&json!({"kind": "generate", "prompt": "todi", "steps": 1,
                                       "seconds": 0.5, "name": "f"}));
    assert_eq!(code, 202);
    let id = sub["id"].as_u64().unwrap();
    s.events(id);
    for path in [
        format!("/api/jobs/{id}/files/..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("/api/jobs/{id}/files/.job.json"),
        format!("/api/jobs/{id}/files/%2Fetc%2Fpasswd"),
        "/api/jobs/999/files/f.wav".into(),
    ] {
        let answer = s.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ));
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(answer.contains("\"error\""), "{path}: {answer}");
    }
    let (code, e) = s.get_json("/api/jobs/999");
    assert_eq!((code, e["error"].is_string()), (404, true));
    let (code, _) = s.delete(&format!("/api/jobs/{id}"));
    assert_eq!(code, 409, "a finished job cannot be cancelled");

    // another site's page cannot reach a loopback server by DNS rebinding
    let answer =
        s.raw("GET /api/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // the server still serves
    assert_eq!(s.get("/api/health").0, 200);
}

#[test]
fn a_token_is_required_on_every_request_when_set() {
    let tmp = tempfile::tempdir().unwrap();
    let token = "test-token-0123456789";
    let s = start(tmp.path(), &["--token", token]);
    for path in ["/api/health", "/", "/api/jobs"] {
        let (code, body) = s.get(path);
        assert_eq!(code, 401, "{path}: {body}");
    }
    let s = s.with_token(token);
    assert_eq!(s.get("/api/health").0, 200);
    let answer = s.raw(&format!(
        "GET /?token={token} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("ragafusion_token="),
        "the page gets a cookie: {answer}"
    );
}

#[test]
fn cancel_a_full_queue_and_a_restart_mid_job() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path(), &["--queue", "1"]);
    let long =
        |seed: u64| json!({"kind": "generate", "prompt": "todi", "seed": seed, "steps": 400});
    let (_, a) = s.submit(&long(1));
    let a = a["id"].as_u64().unwrap();
    s.wait_for(a, |j| j["progress"]["stage"] == "denoising");
    let (code, b) = s.submit(&long(2));
    assert_eq!(code, 202, "{b}");
    let b = b["id"].as_u64().unwrap();
    let (code, e) = s.submit(&long(3));
    assert_eq!(code, 429, "{e}");
    assert!(e["error"].as_str().unwrap().contains("waiting"), "{e}");

    // cancel the waiting one, then the running one
    assert_eq!(s.delete(&format!("/api/jobs/{b}")).0, 200);
    assert_eq!(names(&s.events(b)), ["cancelled"]);
    assert_eq!(s.delete(&format!("/api/jobs/{a}")).0, 200);
    let events = s.events(a);
    assert_eq!(*names(&events).last().unwrap(), "cancelled", "{events:?}");
    assert_eq!(
        s.get_json(&format!("/api/jobs/{a}")).1["state"],
        "cancelled"
    );

    // a failing job leaves the server serving
    let (code, f) = s.submit(&json!({"kind": "analyze", "input": upload_png_lookalike(&s)}));
    assert_eq!(code, 202, "{f}");
    let events = s.events(f["id"].as_u64().unwrap());
    assert_eq!(*names(&events).last().unwrap(), "failed", "{events:?}");
    assert!(events.last().unwrap().1["error"].as_str().unwrap().len() > 5);

    // killed mid-job: after a restart the history is whole and the job
    // shows as interrupted
    let (_, done) = s.submit(&json!({"kind": "generate", "prompt": "todi", "steps": 1,
                                     "seconds": 0.5, "name": "kept"}));
    let done = done["id"].as_u64().unwrap();
    s.events(done);
    let (_, c) = s.submit(&long(4));
    let c = c["id"].as_u64().unwrap();
    s.wait_for(c, |j| j["progress"]["stage"] == "denoising");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);
    let s = start(tmp.path(), &["--queue", "1"]);
    let (_, job) = s.get_json(&format!("/api/jobs/{c}"));
    assert_eq!(job["state"], "interrupted", "{job}");
    let (_, kept) = s.get_json(&format!("/api/jobs/{done}"));
    assert_eq!(kept["state"], "done");
    assert_eq!(kept["files"].as_array().unwrap().len(), 3, "{kept}");
    assert_eq!(
        s.get_json(&format!("/api/jobs/{a}")).1["state"],
        "cancelled"
    );
    // new jobs are numbered after the old ones
    let (_, next) = s.submit(&json!({"kind": "generate", "prompt": "todi", "steps": 1,
                                     "seconds": 0.5}));
    assert!(next["id"].as_u64().unwrap() > c, "{next}");
}

/// A PNG signature and nothing else: accepted as an upload (content
/// check), refused by the decoder when the job runs.
fn upload_png_lookalike(s: &Server) -> String {
    let (code, up) = s.upload("x.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRbroken");
    assert_eq!(code, 201, "{up}");
    up["id"].as_str().unwrap().to_string()
}

#[test]
fn a_cancelled_job_resumes_from_its_saved_state() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path(), &[]);
    let (_, job) = s.submit(&json!({"kind": "generate", "prompt": "todi", "steps": 4,
                                    "seconds": 0.5, "name": "r"}));
    let id = job["id"].as_u64().unwrap();
    // cancelled between its first and its last denoising step (each takes
    // seconds with the tiny pipeline in a debug build)
    s.wait_for(id, |j| {
        j["progress"]["stage"] == "denoising" && j["progress"]["step"].as_u64() >= Some(1)
    });
    assert_eq!(s.delete(&format!("/api/jobs/{id}")).0, 200);
    assert_eq!(*names(&s.events(id)).last().unwrap(), "cancelled");
    let (code, e) = s.post(&format!("/api/jobs/{id}/resume"), "application/json", b"");
    assert_eq!(code, 202, "{e}");
    let events = s.events(id);
    let files = assert_ran_in_order(&events);
    // "resuming at denoising step K of 4", K past the first step
    let (_, job) = s.get_json(&format!("/api/jobs/{id}"));
    let resumed_at = job["messages"].as_array().unwrap().iter().find_map(|m| {
        let rest = m.as_str()?.strip_prefix("resuming at denoising step ")?;
        rest.split(' ').next()?.parse::<u64>().ok()
    });
    assert!(resumed_at.is_some_and(|k| k >= 2), "{job}");
    assert!(files.contains(&"r.wav".to_string()), "{files:?}");
    let (code, e) = s.post(&format!("/api/jobs/{id}/resume"), "application/json", b"");
    assert_eq!(code, 409, "a finished job does not resume: {e}");
    let (code, _) = s.post("/api/jobs/999/resume", "application/json", b"");
    assert_eq!(code, 404);
}

#[test]
fn a_video_is_scored_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[]);
    let video = tmp.path().join("clip.mp4");
    make_video(&video, 3.0, "25", Some("1"));
    let (code, up) = s.upload("clip.mp4", &std::fs::read(&video).unwrap());
    assert_eq!(code, 201, "{up}");
    assert_eq!(
        (up["kind"].as_str(), up["format"].as_str()),
        (Some("video"), Some("mp4"))
    );
    let id = up["id"].as_str().unwrap();
    let (_, wav) = s.upload("a.wav", &clip());
    let wav = wav["id"].as_str().unwrap();
    let job = |extra: Value| {
        let mut body = json!({"kind": "score-video", "video": id, "prompt": "todi raga, violin",
                              "steps": 2, "fade_in": 0.5, "fade_out": 0.5});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    // refused before they are queued, naming the field
    for (extra, field, words) in [
        (json!({"video": wav}), "video", "no video stream"),
        (json!({"format": "avi"}), "format", "mp4, mov, mkv or webm"),
        (json!({"format": "webm"}), "format", "h264"),
        (json!({"duck": true}), "duck", "keep-original"),
        (json!({"end": 9.0}), "end", "3.000 s long"),
        (json!({"loudness": "loud"}), "loudness", "invalid type"),
        (
            json!({"seconds": 30}),
            "seconds",
            "not a field of score-video",
        ),
    ] {
        let (code, e) = s.submit(&job(extra.clone()));
        assert_eq!(code, 400, "{extra}: {e}");
        assert_eq!(e["field"], field, "{extra}: {e}");
        assert!(e["error"].as_str().unwrap().contains(words), "{extra}: {e}");
    }
    let (code, accepted) = s.submit(&job(json!({"keep_original": true, "duck": true})));
    assert_eq!(code, 202, "{accepted}");
    let n = accepted["id"].as_u64().unwrap();
    let files = assert_ran_in_order(&s.events(n));
    assert!(files.contains(&"scored.mp4".to_string()), "{files:?}");
    assert!(files.contains(&"scored.mp4.json".to_string()), "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("music-") && f.ends_with(".wav")),
        "{files:?}"
    );
    let (_, facts) = s.get_json(&format!("/api/jobs/{n}/files/scored.mp4.json"));
    let lufs = facts["loudness"]["encoded"]["integrated_lufs"]
        .as_f64()
        .unwrap();
    assert!((lufs + 14.0).abs() < 0.5, "{facts}");
    assert_eq!(facts["original"]["duck"], true);
    let head = s.raw(&format!(
        "GET /api/jobs/{n}/files/scored.mp4 HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-11\r\n\
         Connection: close\r\n\r\n"
    ));
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(
        head.to_lowercase().contains("content-type: video/mp4"),
        "{head}"
    );
    assert!(head.contains("ftyp"), "{head}");
}
