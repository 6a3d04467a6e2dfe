//! The studio page end to end in headless Chromium (Debian's `chromium`,
//! installed by tools/install-test-deps.sh, or `RAGAFUSION_CHROMIUM`),
//! driven over the Chrome DevTools Protocol: search a raga in the caption
//! builder, fill the Generate form, submit, wait until the audio element
//! can play and the spectrogram image has decoded; and on the Score a
//! video page, upload a small video and play the scored result.
//!
//! With `RAGAFUSION_SCREENSHOTS=DIR` it also inspects a clip through the
//! Inspect page, opens the first compare report under
//! `RAGAFUSION_STUDIO_REPORTS`, and saves a screenshot of every page into
//! DIR (scripts/studio_screenshots.sh; docs/screenshots/ holds them).
//!
//! With `RAGAFUSION_STUDIO_URL=http://127.0.0.1:8642` it drives a server
//! that is already running (say `cargo run --release -- serve` on the
//! shipped model) instead of starting one on the tiny pipelines.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{sd_tiny, Server};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch(profile: &Path) -> Self {
        let chromium = common::chromium();
        let mut child = Command::new(&chromium)
            .args(common::HEADLESS_FLAGS)
            .args([
                "--mute-audio",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{chromium}: {e} (run tools/install-test-deps.sh, or set RAGAFUSION_CHROMIUM)"
                )
            });
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut port = None;
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let rest = url.trim().strip_prefix("ws://127.0.0.1:").unwrap();
                port = Some(rest.split('/').next().unwrap().to_string());
                break;
            }
        }
        let port = port.expect("Chromium printed its DevTools address");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let list = agent
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let targets: Value = serde_json::from_str(&list).unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (ws, _) = tungstenite::connect(url).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Self {
            child,
            ws,
            next_id: 0,
        }
    }

    /// Sends a DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page, in a block of its own (so its
    /// `const`s do not meet the last call's); the value of its last
    /// statement, a promise awaited.
    fn eval(&mut self, expression: &str) -> Value {
        let block = format!("{{ {expression} }}");
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": block, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true.
    fn wait_until(&mut self, expression: &str, what: &str) {
        let t0 = Instant::now();
        while self.eval(expression) != json!(true) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "waiting for {what}: {} / prompt {:?} / {:?}",
                self.eval("document.body.innerText.slice(0, 300)"),
                self.eval("document.querySelector('#generate-prompt').value"),
                self.eval(expression)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves the whole page (up to 2,400 px tall) as `DIR/NAME.jpg`.
    fn screenshot(&mut self, dir: &Path, name: &str) {
        let size = self.call("Page.getLayoutMetrics", json!({}));
        let height = size["cssContentSize"]["height"]
            .as_f64()
            .unwrap()
            .min(2400.0);
        let clip = json!({"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1});
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "jpeg", "quality": 85, "captureBeyondViewport": true, "clip": clip}),
        );
        let data = r["data"].as_str().unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.jpg")), bytes).unwrap();
    }
}

/// The server at `$RAGAFUSION_STUDIO_URL`, or one started on the tiny
/// pipelines with its data under `tmp`; and its base URL.
fn studio(tmp: &Path) -> (Option<Server>, String) {
    if let Ok(url) = std::env::var("RAGAFUSION_STUDIO_URL") {
        return (None, url.trim_end_matches('/').to_string());
    }
    let model = sd_tiny().display().to_string();
    let musicgen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/musicgen-tiny");
    let musicgen = musicgen.display().to_string();
    let reports =
        std::env::var("RAGAFUSION_STUDIO_REPORTS").unwrap_or_else(|_| tmp.display().to_string());
    let args = [
        "--model",
        &model,
        "--model",
        &musicgen,
        "--reports",
        &reports,
    ];
    let s = Server::start(&tmp.join("data"), &args);
    let base = s.base.clone();
    (Some(s), base)
}

/// A browser on `base`'s page `page`, once the models are listed.
fn open(tmp: &Path, base: &str, page: &str) -> Browser {
    let mut b = Browser::launch(&tmp.join("profile"));
    b.call("Page.enable", json!({}));
    b.call("Page.navigate", json!({"url": format!("{base}/#{page}")}));
    b.wait_until(
        "document.readyState === 'complete' && \
         document.querySelector('#generate-form .model-select').options.length > 0",
        "the page to load the models",
    );
    b
}

/// Puts `file` into the file input `selector`.
fn choose_file(b: &mut Browser, selector: &str, file: &Path) {
    let doc = b.call("DOM.getDocument", json!({}));
    let root = doc["root"]["nodeId"].clone();
    let input = b.call(
        "DOM.querySelector",
        json!({"nodeId": root, "selector": selector}),
    );
    b.call(
        "DOM.setFileInputFiles",
        json!({"nodeId": input["nodeId"], "files": [file.display().to_string()]}),
    );
}

#[test]
fn the_score_video_page_plays_the_scored_video() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, base) = studio(tmp.path());
    let video = tmp.path().join("clip.mp4");
    common::make_video(&video, 3.0, "25", Some("1"));
    let mut b = open(tmp.path(), &base, "score-video");
    choose_file(&mut b, "#score-video-form input[type=file]", &video);
    b.eval(
        "const f = document.querySelector('#score-video-form'); \
         f.querySelector('[name=prompt]').value = 'Kalyani raga alapana, violin'; \
         f.querySelector('[name=steps]').value = '2'; \
         f.querySelector('[name=fade_in]').value = '0.5'; \
         f.querySelector('[name=fade_out]').value = '0.5'; \
         f.querySelector('[name=keep_original]').checked = true; \
         f.querySelector('button[type=submit]').click(); true",
    );
    b.wait_until(
        "(() => { const v = document.querySelector('#score-video-results video'); \
                  return !!v && v.readyState >= 3 && !v.error; })()",
        "the scored video to be able to play",
    );
    let facts = b.eval(
        "const v = document.querySelector('#score-video-results video'); \
         [v.duration, v.videoWidth, v.videoHeight]",
    );
    let duration = facts[0].as_f64().unwrap();
    assert!((duration - 3.0).abs() < 0.1, "{facts}");
    assert_eq!(
        (facts[1].as_u64(), facts[2].as_u64()),
        (Some(160), Some(120)),
        "{facts}"
    );
    // muted, so no autoplay rule stands in the way; it plays on
    b.eval(
        "const v = document.querySelector('#score-video-results video'); \
         v.muted = true; v.play().then(() => true)",
    );
    b.wait_until(
        "document.querySelector('#score-video-results video').currentTime > 0.5",
        "the video to play",
    );
    b.wait_until(
        "document.querySelector('#score-video-results .facts').textContent.includes('LUFS') && \
         [...document.querySelectorAll('#score-video-results .files a')].some(a => a.download === 'scored.mp4')",
        "the loudness facts and the download",
    );
    if let Some(dir) = std::env::var_os("RAGAFUSION_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        b.screenshot(Path::new(&dir), "score-video");
    }
}

#[test]
fn the_generate_page_makes_a_clip_that_plays() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, base) = studio(tmp.path());
    let mut b = open(tmp.path(), &base, "generate");
    b.wait_until(
        "document.querySelector('#b-tala').options.length > 1",
        "the page to load the vocabulary",
    );
    // the caption builder: a raga typed in another spelling, then picked
    b.eval(
        "const s = document.querySelector('#raga-search'); s.value = 'thodi'; \
         s.dispatchEvent(new Event('input')); true",
    );
    b.wait_until(
        "[...document.querySelectorAll('#raga-suggestions li')].some(li => li.textContent.startsWith('Todi'))",
        "raga suggestions",
    );
    b.eval(
        "[...document.querySelectorAll('#raga-suggestions li')].find(li => li.textContent.startsWith('Todi')).click(); \
         const i = document.querySelector('#b-instrument'); i.value = 'violin'; \
         i.dispatchEvent(new Event('input')); true",
    );
    b.wait_until(
        "document.querySelector('#generate-prompt').value.includes('Todi') && \
         document.querySelector('#generate-prompt').value.includes('violin')",
        "the built caption",
    );
    b.eval(
        "const f = document.querySelector('#generate-form'); \
         f.querySelector('[name=seed]').value = '7'; \
         f.querySelector('[name=steps]').value = '2'; \
         f.querySelector('[name=seconds]').value = '2'; \
         document.querySelector('#generate-submit').click(); true",
    );
    b.wait_until(
        "(() => { const a = document.querySelector('#generate-results audio'); \
                  return !!a && a.readyState >= 3 && !a.error; })()",
        "the audio element to be able to play",
    );
    let duration = b.eval("document.querySelector('#generate-results audio').duration");
    assert!((duration.as_f64().unwrap() - 2.0).abs() < 0.3, "{duration}");
    b.wait_until(
        "(() => { const i = document.querySelector('#generate-results img'); \
                  return !!i && i.complete && i.naturalWidth > 0; })()",
        "the spectrogram image",
    );
    let width = b.eval(
        "document.querySelector('#generate-results img').decode().then(() => \
         document.querySelector('#generate-results img').naturalWidth)",
    );
    assert!(width.as_u64().unwrap() >= 100, "{width}");
    b.wait_until(
        "document.querySelector('#generate-results .state').textContent === 'done' && \
         document.querySelectorAll('#generate-results .files a').length === 3",
        "the downloads",
    );

    // the other pages, for the screenshots
    let Some(dir) = std::env::var_os("RAGAFUSION_SCREENSHOTS") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    b.screenshot(dir, "generate");
    for page in [
        "interpolate",
        "audio-to-audio",
        "inspect",
        "compare",
        "history",
    ] {
        b.eval(&format!("location.hash = '#{page}'; true"));
        b.wait_until(
            &format!("!document.querySelector('#page-{page}').hidden"),
            page,
        );
        match page {
            "inspect" => inspect_a_clip(&mut b),
            "interpolate" => {
                b.eval(
                    "const f = document.querySelector('#interpolate-form'); \
                     f.querySelector('[name=from_prompt]').value = 'todi raga alapana, violin'; \
                     f.querySelector('[name=to_prompt]').value = 'kalyani raga alapana, flute'; \
                     f.querySelector('[name=steps]').value = '2'; \
                     f.querySelector('[name=inference_steps]').value = '2'; \
                     f.querySelector('button[type=submit]').click(); true",
                );
                b.wait_until(
                    "document.querySelector('#interpolate-results .state')?.textContent === 'done'",
                    "the interpolation",
                );
            }
            "compare" => {
                b.wait_until(
                    "document.querySelectorAll('#report-list li').length > 0",
                    "the report list",
                );
                b.eval("document.querySelector('#report-list a')?.click(); true");
                std::thread::sleep(Duration::from_secs(3));
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
        b.screenshot(dir, page);
    }
}

/// Uploads a recording through the Inspect page's file input and waits
/// for the raga table.
fn inspect_a_clip(b: &mut Browser) {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav");
    choose_file(b, "#inspect-form input[type=file]", &clip);
    b.eval(
        "document.querySelector('#inspect-form [name=raga]').value = 'kalyani';          document.querySelector('#inspect-form button[type=submit]').click(); true",
    );
    b.wait_until(
        "!!document.querySelector('#inspect-results table.top') &&          !!document.querySelector('#inspect-results img')",
        "the analysis",
    );
    std::thread::sleep(Duration::from_millis(500));
}
