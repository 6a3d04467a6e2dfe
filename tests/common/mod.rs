//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `ragafusion` binary; fails the test if it panicked.
#[allow(dead_code)]
pub fn run_cli(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ragafusion"))
        .args(args)
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    out
}

/// Asserts that a run succeeded, showing its stderr if not.
#[allow(dead_code)]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that a run failed with status 1 and an error holding `words`.
#[allow(dead_code)]
pub fn fails_with(out: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for w in words {
        assert!(err.contains(w), "error lacks {w:?}: {err}");
    }
}

/// The largest absolute difference of two tensors of one shape (in f32).
#[allow(dead_code)]
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    use candle_core::DType;
    assert_eq!(a.dims(), b.dims(), "shapes");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The tiny test pipeline (tests/data/sd-tiny) copied into `dir` and set
/// to 64-bin spectrograms over 60-700 Hz, so that its images are 64 x 512
/// px and quick to make.
#[allow(dead_code)]
pub fn narrow_pipeline(dir: &Path) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny"),
        dir,
    );
    let params = ragafusion::spectrogram::SpectrogramParams {
        num_mel_bins: 64,
        min_hz: 60,
        max_hz: 700,
        ..Default::default()
    };
    std::fs::write(
        dir.join("spectrogram.json"),
        serde_json::to_string(&params).unwrap(),
    )
    .unwrap();
}

/// Copies the folder tree `from` into the existing folder `to`.
#[allow(dead_code)]
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes `n` small spectrogram PNGs (`height` mel bins x `width` frames,
/// EXIF included) with captions and alternating raga labels into `dir`,
/// plus `metadata.jsonl`. Even images are bright low down, odd ones high
/// up, so the two "ragas" differ visibly.
#[allow(dead_code)]
pub fn tiny_dataset(dir: &Path, n: usize, height: usize, width: usize) {
    use ragafusion::spectrogram::{write_png, SpectrogramImage, SpectrogramParams};
    std::fs::create_dir_all(dir).unwrap();
    let params = SpectrogramParams {
        num_mel_bins: height as u32,
        ..SpectrogramParams::default()
    };
    let mut lines = String::new();
    for i in 0..n {
        let raga = if i % 2 == 0 { "Todi" } else { "Kalyani" };
        let band = if i % 2 == 0 {
            height * 3 / 4
        } else {
            height / 4
        };
        let mut rgb = Vec::with_capacity(height * width * 3);
        for y in 0..height {
            for x in 0..width {
                let d = (y as i64 - band as i64).unsigned_abs() as f64;
                let v =
                    (255.0 * (-d * d / 8.0).exp() * (0.6 + 0.4 * ((x + i) % 7) as f64 / 7.0)) as u8;
                rgb.extend([v, v, v]);
            }
        }
        let image = SpectrogramImage { width, height, rgb };
        let name = format!("clip{i:02}.png");
        write_png(&dir.join(&name), &image, &params, 1.0).unwrap();
        lines.push_str(&format!(
            "{{\"file_name\": \"{name}\", \"text\": \"{raga} raga, adi tala\", \"raga\": \"{raga}\"}}\n"
        ));
    }
    std::fs::write(dir.join("metadata.jsonl"), lines).unwrap();
}

/// Asserts that long-form WAVs (made of 512-column clips sharing 128, at
/// `params`, each `width_px` columns wide) have no more spectral flux
/// around their clip joins than elsewhere (within 5%), over the joins of
/// all of them together.
#[allow(dead_code)]
pub fn assert_no_seam(
    wavs: &[&Path],
    params: ragafusion::spectrogram::SpectrogramParams,
    width_px: usize,
) {
    use ragafusion::audio::{read_audio_as, ChannelLayout};
    use ragafusion::diffusion::pipeline::longform::Tiling;
    use ragafusion::spectrogram::metrics::{seam_report, spectral_flux};
    use ragafusion::spectrogram::SpectrogramConverter;
    let tiling = Tiling {
        clip_px: 512,
        overlap_px: 128,
    };
    let starts = tiling.starts(width_px);
    assert!(starts.len() >= 2, "{starts:?}");
    // frames where one clip hands over to the next: both ends and the
    // middle of each overlap
    let joins: Vec<usize> = starts
        .windows(2)
        .flat_map(|w| [w[1], w[0] + 512, (w[1] + w[0] + 512) / 2])
        .collect();
    // the pieces' flux end to end (each piece's frame 0, which has no
    // predecessor, left out), with every piece's joins
    let mut flux = vec![0.0];
    let mut all_joins = Vec::new();
    for wav in wavs {
        let audio = read_audio_as(wav, params.sample_rate_hz, ChannelLayout::Mono).unwrap();
        let mel = SpectrogramConverter::new(params.clone())
            .unwrap()
            .mel_from_audio(&audio)
            .unwrap();
        let piece = spectral_flux(&mel);
        let offset = flux.len() - 1;
        all_joins.extend(joins.iter().map(|j| j + offset));
        flux.extend_from_slice(&piece[1..]);
        let r = seam_report(&piece, &joins, 2);
        eprintln!(
            "seam {}: {:.3} ({r:?})",
            wav.display(),
            r.at_joins / r.elsewhere
        );
    }
    let r = seam_report(&flux, &all_joins, 2);
    eprintln!("seam, all pieces: {:.3} ({r:?})", r.at_joins / r.elsewhere);
    assert!(
        r.at_joins <= r.elsewhere * 1.05,
        "flux at joins {:.5} vs elsewhere {:.5}",
        r.at_joins,
        r.elsewhere
    );
}
pub mod server;

/// The headless Chromium of the browser tests: `RAGAFUSION_CHROMIUM`, else
/// `chromium` on the PATH (tools/install-test-deps.sh installs Debian's
/// package); fails the test with that advice when it does not run.
#[allow(dead_code)]
pub fn chromium() -> String {
    let chromium = std::env::var("RAGAFUSION_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let probe = Command::new(&chromium).arg("--version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "headless Chromium is needed: run tools/install-test-deps.sh \
         (Debian's chromium package) or set RAGAFUSION_CHROMIUM ({probe:?})"
    );
    chromium
}

/// Headless Chromium on a machine with no network: no sandbox (root in
/// CI), no GPU, and none of the background connections it would try.
#[allow(dead_code)]
pub const HEADLESS_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Runs ffmpeg quietly; fails the test if it fails.
#[allow(dead_code)]
pub fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (tools/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test-pattern video `seconds` long at `rate` frames per second; with
/// a 1 kHz tone when `tone` is given (an ffmpeg `volume` expression
/// shaping it, `1` for steady).
#[allow(dead_code)]
pub fn make_video(path: &Path, seconds: f64, rate: &str, tone: Option<&str>) {
    let picture = format!("testsrc=size=160x120:rate={rate}:duration={seconds}");
    let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), picture];
    if let Some(volume) = tone {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency=1000:sample_rate=48000:duration={seconds}"),
            "-af".into(),
            format!("volume='{volume}':eval=frame"),
            "-c:a".into(),
            "aac".into(),
        ]);
    }
    let webm = path.extension().is_some_and(|e| e == "webm");
    let codec = if webm { "libvpx-vp9" } else { "libx264" };
    args.extend([
        "-c:v".into(),
        codec.into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
    ]);
    if webm {
        args.extend(["-c:a".into(), "libopus".into()]);
    }
    args.push(path.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&args);
}
