//! `score-video` on videos made by ffmpeg's lavfi sources, checked with
//! ffprobe and ffmpeg's own `ebur128` filter: the result plays, its video
//! packets are the input's, its sound lasts as long as the picture, sits
//! at the loudness target under -1 dBTP, and ducks; bad inputs fail with
//! a clear error and leave no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{assert_ok, fails_with, ffmpeg, make_video, run_cli};

/// Few denoising steps: these tests check the video plumbing, not music.
const STEPS: &str = "4";

fn probe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each video packet's size and MD5, in order.
fn video_packets(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            format!("{} {}", f[4], f[5]) // size, hash
        })
        .collect()
}

/// Duration of every stream of a kind, seconds, counting packets for
/// containers whose streams do not say.
fn stream_seconds(path: &Path, selector: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector, "-show_entries"])
        .args(["packet=pts_time,duration_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|l| {
            let (pts, dur) = l.split_once(',')?;
            Some(pts.parse::<f64>().ok()? + dur.trim_end_matches(',').parse::<f64>().unwrap_or(0.0))
        })
        .fold(0.0, f64::max)
}

/// Integrated loudness (LUFS) and true peak (dBTP) by ffmpeg's `ebur128`.
fn r128(path: &Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-nostats", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = err.rsplit("Summary:").next().unwrap();
    let value = |label: &str| -> f64 {
        let rest = summary
            .split(label)
            .nth(1)
            .unwrap_or_else(|| panic!("{label}: {summary}"));
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let integrated = value("I:");
    let true_peak = value("Peak:");
    (integrated, true_peak)
}

/// The first sound track as mono samples at 48 kHz.
fn decode_mono(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "f32le", "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn score(video: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "score-video",
        video.to_str().unwrap(),
        "Kalyani raga alapana, violin",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        STEPS,
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

/// Checks every property of a scored video against its input.
fn check_scored(input: &Path, out: &Path, target_lufs: f64, frame_rate: f64) {
    let p = probe(out);
    let kinds: Vec<&str> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "video").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "audio").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        video_packets(input),
        video_packets(out),
        "video packets differ"
    );
    let picture = stream_seconds(out, "v:0");
    let sound = stream_seconds(out, "a:0");
    assert!(
        (picture - sound).abs() <= 1.0 / frame_rate,
        "picture {picture} s, sound {sound} s"
    );
    let (integrated, true_peak) = r128(out);
    eprintln!(
        "{}: picture {picture:.3} s, sound {sound:.3} s, {integrated} LUFS, {true_peak} dBTP",
        out.display()
    );
    assert!((integrated - target_lufs).abs() <= 1.0, "{integrated} LUFS");
    assert!(true_peak <= -1.0, "{true_peak} dBTP");
}

fn no_output_left(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} was left", out.display());
    let stray: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_short_video_with_sound_is_scored_and_a_rerun_reuses_the_music() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.mp4");
    make_video(&input, 7.0, "25", Some("1"));
    let out = tmp.path().join("scored.mp4");
    let o = score(&input, &out, &[]);
    assert_ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        out.display().to_string()
    );
    check_scored(&input, &out, -14.0, 25.0);
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("scored.music/scored.mp4.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["reused_music"], false);
    assert!(sidecar["music_end_s"].as_f64().unwrap() >= 6.0 - 1e-9);
    // other mixing settings: the music is reused, not made again
    let o = score(&input, &out, &["--loudness", "-23", "--fade-in", "0.5"]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("reusing the music"));
    check_scored(&input, &out, -23.0, 25.0);
}

#[test]
fn a_long_silent_video_at_29_97_fps_is_scored_for_broadcast() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("long.mkv");
    make_video(&input, 61.0, "30000/1001", None);
    let out = tmp.path().join("long-scored.mkv");
    assert_ok(&score(&input, &out, &["--loudness", "-23"]));
    check_scored(&input, &out, -23.0, 30000.0 / 1001.0);
}

#[test]
fn a_webm_section_keeps_the_rest_of_the_sound() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.webm");
    make_video(&input, 7.0, "24", Some("1"));
    let out = tmp.path().join("part.webm");
    assert_ok(&score(&input, &out, &["--start", "2", "--end", "6"]));
    check_scored(&input, &out, -14.0, 24.0);
    // before the section only the tone plays: a pure 1 kHz sine
    let x = decode_mono(&out);
    let tone = &x[4_800..4_800 + 48_000];
    let rms = (tone.iter().map(|s| s * s).sum::<f32>() / tone.len() as f32).sqrt();
    assert!(
        rms > 0.01,
        "the original sound was dropped outside the section"
    );
}

#[test]
fn musicgen_scores_a_video_too() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.mov");
    make_video(&input, 4.0, "30", Some("1"));
    let out = tmp.path().join("mg.mov");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/musicgen-tiny");
    let o = run_cli(&[
        "score-video",
        input.to_str().unwrap(),
        "carnatic violin, kalyani",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "musicgen",
        "--model",
        model.to_str().unwrap(),
        "--keep-original",
        "--original-gain",
        "-12",
    ]);
    assert_ok(&o);
    check_scored(&input, &out, -14.0, 30.0);
}

/// Level in dB of `x` with the 1 kHz tone removed: the music's share.
fn music_db(x: &[f32]) -> f64 {
    use realfft::RealFftPlanner;
    let n = x.len();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut input: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            f64::from(*s) * w
        })
        .collect();
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut input, &mut spectrum).unwrap();
    let hz = |k: usize| k as f64 * 48_000.0 / n as f64;
    let energy: f64 = spectrum
        .iter()
        .enumerate()
        .filter(|(k, _)| !(800.0..1200.0).contains(&hz(*k)) && hz(*k) > 40.0)
        .map(|(_, c)| c.norm_sqr())
        .sum();
    10.0 * energy.log10()
}

#[test]
fn ducking_lowers_the_music_where_the_original_is_active() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("speech.mp4");
    // the tone plays from 2.5 s to 4.5 s only, like a line of dialogue
    make_video(&input, 7.0, "25", Some("between(t,2.5,4.5)"));
    let fades = ["--keep-original", "--fade-in", "0.2", "--fade-out", "0.2"];
    let plain = tmp.path().join("plain.mp4");
    assert_ok(&score(&input, &plain, &fades));
    let ducked = tmp.path().join("ducked.mp4");
    let mut with_duck = fades.to_vec();
    with_duck.push("--duck");
    let o = score(&input, &ducked, &with_duck);
    assert_ok(&o);
    check_scored(&input, &ducked, -14.0, 25.0);
    // the measure: the music's level (the tone filtered out) while the
    // original is active, against its level in the quiet stretch before,
    // compared between the two runs of the same music
    let contrast = |path: &Path| {
        let x = decode_mono(path);
        let s = |a: f64, b: f64| &x[(a * 48_000.0) as usize..(b * 48_000.0) as usize];
        music_db(s(2.9, 4.1)) - music_db(s(0.9, 2.1))
    };
    let (plain_db, ducked_db) = (contrast(&plain), contrast(&ducked));
    eprintln!("music under the original: {ducked_db:.1} dB with --duck, {plain_db:.1} dB without");
    assert!(
        ducked_db <= plain_db - 8.0,
        "music under the original: {ducked_db:.1} dB with --duck, {plain_db:.1} dB without"
    );
}

#[test]
fn bad_inputs_fail_clearly_and_leave_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out.mp4");
    let text = dir.join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    fails_with(&score(&text, &out, &[]), &["notes.mp4", "not a video"]);
    no_output_left(dir, &out);

    let sound = dir.join("tone.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=2",
        sound.to_str().unwrap(),
    ]);
    fails_with(&score(&sound, &out, &[]), &["tone.wav", "no video stream"]);
    no_output_left(dir, &out);

    let empty = dir.join("empty.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=0",
        "-c:v",
        "libx264",
        empty.to_str().unwrap(),
    ]);
    fails_with(&score(&empty, &out, &[]), &["empty.mp4", "0 s long"]);
    no_output_left(dir, &out);

    let good = dir.join("good.mp4");
    make_video(&good, 3.0, "25", None);
    let missing = dir.join("missing.mp4");
    fails_with(
        &score(&missing, &out, &[]),
        &["missing.mp4", "no such video file"],
    );
    fails_with(&score(&good, &good, &[]), &["--out", "is the input"]);
    fails_with(
        &score(&good, &out, &["--end", "10"]),
        &["--end", "3.000 s long"],
    );
    fails_with(
        &score(&good, &out, &["--duck"]),
        &["--duck", "--keep-original"],
    );
    let webm = dir.join("out.webm");
    fails_with(&score(&good, &webm, &[]), &["--out", "h264"]);
    no_output_left(dir, &webm);
    // a folder no file can be made in, even by root
    let proc_out = Path::new("/proc/ragafusion-scored.mp4");
    if Path::new("/proc/self").is_dir() {
        fails_with(
            &score(&good, proc_out, &[]),
            &["/proc/ragafusion-scored.mp4", "cannot write"],
        );
    }
    let under_a_file = text.join("out.mp4");
    fails_with(
        &score(&good, &under_a_file, &[]),
        &["notes.mp4", "a file is there"],
    );
    no_output_left(dir, &out);

    // no ffmpeg: on no PATH, or named where there is none
    let bin = env!("CARGO_BIN_EXE_ragafusion");
    let args = [
        "score-video",
        good.to_str().unwrap(),
        "kalyani",
        "--out",
        out.to_str().unwrap(),
    ];
    let no_path = Command::new(bin)
        .args(args)
        .env("PATH", "")
        .output()
        .unwrap();
    fails_with(&no_path, &["ffmpeg", "apt-get install ffmpeg"]);
    let named = Command::new(bin)
        .args(args)
        .env("RAGAFUSION_FFMPEG", dir.join("no-ffmpeg"))
        .output()
        .unwrap();
    fails_with(&named, &["RAGAFUSION_FFMPEG", "no-ffmpeg"]);
    no_output_left(dir, &out);
}
