//! A `ragafusion serve` process on an ephemeral loopback port, and a small
//! HTTP client for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The tiny diffusion pipeline of the tests.
pub fn sd_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny")
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Server {
    /// Starts `ragafusion serve --port 0 ARGS` with its data in `data`.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ragafusion"))
            .args(["serve", "--port", "0", "--data"])
            .arg(data)
            .args(args)
            .env("RAGAFUSION_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Self {
            child,
            base,
            port,
            agent,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` from now on.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }

    /// GET: status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    /// GET: status and bytes.
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let mut r = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (status, bytes)
    }

    /// GET a JSON answer.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (s, text) = self.get(path);
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST raw bytes with a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut r = self
            .auth(self.agent.post(format!("{}{path}", self.base)))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST a job body.
    pub fn submit(&self, body: &Value) -> (u16, Value) {
        self.post("/api/jobs", "application/json", body.to_string().as_bytes())
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .auth(self.agent.delete(format!("{}{path}", self.base)))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Uploads `bytes` as the multipart field `file`.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> (u16, Value) {
        let boundary = "ragafusion-test-boundary-7f3a";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.post(
            "/api/uploads",
            &format!("multipart/form-data; boundary={boundary}"),
            &body,
        )
    }

    /// Follows a job's events to their end: (event, data) in order.
    pub fn events(&self, id: u64) -> Vec<(String, Value)> {
        let r = self
            .auth(
                self.agent
                    .get(format!("{}/api/jobs/{id}/events", self.base)),
            )
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let reader = BufReader::new(r.into_body().into_reader());
        let mut out = Vec::new();
        let mut name = String::new();
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(d).unwrap();
                let last = matches!(name.as_str(), "done" | "failed" | "cancelled");
                out.push((std::mem::take(&mut name), v));
                if last {
                    break;
                }
            }
        }
        out
    }

    /// Sends raw request bytes and returns the raw answer (for requests a
    /// client library would tidy up).
    pub fn raw(&self, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    /// Polls a job until `until` holds for it.
    pub fn wait_for(&self, id: u64, until: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let (_, v) = self.get_json(&format!("/api/jobs/{id}"));
            if until(&v) {
                return v;
            }
            assert!(t0.elapsed() < Duration::from_secs(300), "job {id}: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's peak resident memory so far, kB (Linux).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
