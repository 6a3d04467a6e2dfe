//! The human-readable outputs: bar charts and confusion matrices as PNG
//! (`charts/`), and `report.html`, one self-contained file (audio,
//! spectrograms and charts inlined as data: URIs; no scripts, fonts or
//! styles from elsewhere) that opens offline.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use super::results::Results;
use super::summary::{BackendSummary, Stat};
use crate::audio::{read_audio, resample, Audio, ChannelLayout};
use crate::error::{Error, Result};
use crate::fsutil::write_bytes_atomic;
use crate::plot::canvas::Canvas;
use crate::plot::charts::{bars, confusion_matrix};
use crate::spectrogram::read_png;

/// Sample rate of the audio inlined in the report (Hz): half the size of
/// 44.1 kHz, and enough for a listening check.
pub const REPORT_AUDIO_HZ: u32 = 22050;
/// Largest spectrogram thumbnail in the report, pixels (width, height).
pub const THUMB_PX: (usize, usize) = (256, 128);

/// A chart: file name under `charts/`, caption, image.
pub struct Chart {
    /// File name, e.g. `cnn-top1.png`.
    pub file: String,
    /// What it shows.
    pub title: String,
    /// The picture.
    pub canvas: Canvas,
    /// Whether it is a confusion matrix (shown in its own section).
    pub confusion: bool,
}

fn bar_chart(
    file: &str,
    title: &str,
    backends: &[BackendSummary],
    value: &dyn Fn(&BackendSummary) -> Option<f64>,
    format: &dyn Fn(f64) -> String,
    max: Option<f64>,
) -> Option<Chart> {
    let rows: Vec<(String, f64)> = backends
        .iter()
        .filter_map(|b| value(b).map(|v| (b.name.clone(), v)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let top = max.unwrap_or_else(|| rows.iter().map(|r| r.1).fold(0.0, f64::max) * 1.1);
    Some(Chart {
        file: file.into(),
        title: title.into(),
        canvas: bars(title, &rows, top.max(1e-12), format),
        confusion: false,
    })
}

/// Every chart of the results.
pub fn charts(backends: &[BackendSummary]) -> Vec<Chart> {
    let pct = |v: f64| format!("{:.0}%", 100.0 * v);
    let num = |v: f64| format!("{v:.3}");
    let mean = |s: Option<Stat>| s.map(|s| s.mean);
    let mut out: Vec<Chart> = [
        bar_chart(
            "cnn-top1.png",
            "CNN: requested raga top-1",
            backends,
            &|b| Some(b.cnn.top1),
            &pct,
            Some(1.0),
        ),
        bar_chart(
            "cnn-top3.png",
            "CNN: requested raga in top 3",
            backends,
            &|b| Some(b.cnn.top3),
            &pct,
            Some(1.0),
        ),
        bar_chart(
            "knn-top1.png",
            "kNN: requested raga top-1",
            backends,
            &|b| Some(b.knn.top1),
            &pct,
            Some(1.0),
        ),
        bar_chart(
            "knn-top3.png",
            "kNN: requested raga in top 3",
            backends,
            &|b| Some(b.knn.top3),
            &pct,
            Some(1.0),
        ),
        bar_chart(
            "in-scale.png",
            "In-scale ratio above chance",
            backends,
            &|b| mean(b.in_scale_above_chance),
            &num,
            None,
        ),
        bar_chart(
            "js-distance.png",
            "JS distance to the raga template (lower is closer)",
            backends,
            &|b| mean(b.js_distance),
            &num,
            Some(1.0),
        ),
        bar_chart(
            "fd-cnn.png",
            "Frechet distance to reference, CNN embeddings",
            backends,
            &|b| b.fd_cnn,
            &num,
            None,
        ),
        bar_chart(
            "fd-knn.png",
            "Frechet distance to reference, PCD embeddings",
            backends,
            &|b| b.fd_knn,
            &num,
            None,
        ),
        bar_chart(
            "seconds-per-clip.png",
            "Seconds to generate a clip",
            backends,
            &|b| mean(b.seconds_per_clip),
            &|v| format!("{v:.2} s"),
            None,
        ),
        bar_chart(
            "real-time-factor.png",
            "Real-time factor (below 1: faster than real time)",
            backends,
            &|b| mean(b.real_time_factor),
            &|v| format!("{v:.2}"),
            None,
        ),
        bar_chart(
            "peak-memory.png",
            "Peak resident memory, MiB",
            backends,
            &|b| b.peak_rss_mib,
            &|v| format!("{v:.0}"),
            None,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    for b in backends {
        for (judge, e) in [("cnn", &b.cnn), ("knn", &b.knn)] {
            if e.ragas.is_empty() {
                continue;
            }
            let title = format!(
                "{}: {} confusion",
                b.name,
                judge.to_uppercase().replace("KNN", "kNN")
            );
            out.push(Chart {
                file: format!("confusion-{}-{judge}.png", b.name),
                canvas: confusion_matrix(&title, &e.ragas, &e.confusion),
                title,
                confusion: true,
            });
        }
    }
    out
}

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// 16-bit mono WAV bytes of `audio` at [`REPORT_AUDIO_HZ`].
pub fn report_wav(audio: &Audio) -> Result<Vec<u8>> {
    let mono = resample(
        &audio.clone().with_layout(ChannelLayout::Mono),
        REPORT_AUDIO_HZ,
    )?;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: REPORT_AUDIO_HZ,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let err = |e: hound::Error| Error::InvalidAudio {
        context: "report audio".into(),
        reason: e.to_string(),
    };
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).map_err(err)?;
        for v in &mono.channels[0] {
            w.write_sample((v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                .map_err(err)?;
        }
        w.finalize().map_err(err)?;
    }
    Ok(cursor.into_inner())
}

/// A spectrogram PNG shrunk (box average) to fit [`THUMB_PX`], as PNG.
pub fn thumbnail(png: &Path) -> Result<Vec<u8>> {
    let img = read_png(png)?.image;
    let (w, h) = (
        img.width.min(THUMB_PX.0).max(1),
        img.height.min(THUMB_PX.1).max(1),
    );
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    for y in 0..h {
        let (y0, y1) = (
            y * img.height / h,
            ((y + 1) * img.height / h).max(y * img.height / h + 1),
        );
        for x in 0..w {
            let (x0, x1) = (
                x * img.width / w,
                ((x + 1) * img.width / w).max(x * img.width / w + 1),
            );
            let mut sum = [0u32; 3];
            for yy in y0..y1 {
                for xx in x0..x1 {
                    let i = (yy * img.width + xx) * 3;
                    for (s, v) in sum.iter_mut().zip(&img.rgb[i..i + 3]) {
                        *s += *v as u32;
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            c.put(x as i64, y as i64, sum.map(|s| (s / n) as u8));
        }
    }
    c.encode_png()
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;\
text-align:right;vertical-align:middle}th{background:#eee}td.l,th.l{text-align:left}\
img.spec{image-rendering:pixelated;width:256px;height:96px}figure{display:inline-block;\
margin:0.5em}figcaption{font-size:smaller}.meta{color:#555}audio{width:240px}";

fn stat_cell(s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) => format!(
            "<td>{:.*} &plusmn; {:.*}</td>",
            digits, s.mean, digits, s.std
        ),
        None => "<td>-</td>".into(),
    }
}

fn opt_cell(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("<td>{v:.digits$}</td>"),
        None => "<td>-</td>".into(),
    }
}

fn summary_table(backends: &[BackendSummary]) -> String {
    let mut h = String::from(
        "<table id=\"summary\"><thead><tr><th class=\"l\">backend</th><th class=\"l\">kind</th>\
<th>clips</th><th>CNN top-1</th><th>CNN top-3</th><th>kNN top-1</th><th>kNN top-3</th>\
<th>in-scale above chance</th><th>illegal swaras</th><th>JS distance</th>\
<th>template top-1</th><th>tonic drift (cents)</th><th>FD (CNN)</th><th>FD (PCD)</th>\
<th>s / clip</th><th>RTF</th><th>load (s)</th><th>peak MiB</th></tr></thead><tbody>",
    );
    let pct = |v: f64| format!("<td>{:.0}%</td>", 100.0 * v);
    for b in backends {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}</tr>",
            escape(&b.name),
            b.kind.name(),
            b.clips,
            pct(b.cnn.top1),
            pct(b.cnn.top3),
            pct(b.knn.top1),
            pct(b.knn.top3),
            stat_cell(b.in_scale_above_chance, 3),
            stat_cell(b.illegal_swara_rate, 3),
            stat_cell(b.js_distance, 3),
            pct(b.template_top1),
            stat_cell(b.tonic_drift_cents, 1),
            opt_cell(b.fd_cnn, 3),
            opt_cell(b.fd_knn, 4),
            stat_cell(b.seconds_per_clip, 2),
            stat_cell(b.real_time_factor, 2),
            opt_cell(b.load_s, 2),
            match b.peak_rss_mib {
                Some(v) => format!("<td>{v:.0}{}</td>", if b.peak_rss_isolated { "" } else { "*" }),
                None => "<td>-</td>".into(),
            },
        );
    }
    h.push_str("</tbody></table>");
    h
}

fn spectral_table(backends: &[BackendSummary]) -> String {
    let mut h = String::from(
        "<table id=\"spectral\"><thead><tr><th class=\"l\">backend</th><th>centroid (Hz)</th>\
<th>bandwidth (Hz)</th><th>roll-off (Hz)</th><th>flatness</th><th>RMS (dBFS)</th>\
<th>voiced share</th><th>onsets on a pulse grid, beyond random (clips)</th></tr></thead><tbody>",
    );
    for b in backends {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td>{}{}{}{}{}{}{}</tr>",
            escape(&b.name),
            stat_cell(b.centroid_hz, 0),
            stat_cell(b.bandwidth_hz, 0),
            stat_cell(b.rolloff_hz, 0),
            stat_cell(b.flatness, 4),
            stat_cell(b.rms_dbfs, 1),
            stat_cell(b.voiced_fraction, 2),
            match b.onset_grid_excess {
                Some(s) => format!(
                    "<td>{:.2} &plusmn; {:.2} ({})</td>",
                    s.mean, s.std, b.clips_with_onsets
                ),
                None => "<td>-</td>".into(),
            },
        );
    }
    h.push_str("</tbody></table>");
    h
}

/// Builds `report.html` for `results` (clip files read from `out`).
pub fn report_html(out: &Path, results: &Results, charts: &[Chart]) -> Result<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<style>{STYLE}</style></head><body><h1>{}</h1><p>{}</p>",
        escape(&results.name),
        escape(&results.name),
        escape(&results.description)
    );
    let j = &results.judges;
    let _ = write!(
        h,
        "<p class=\"meta\">ragafusion {} &middot; {} clips of {} s &middot; seeds {:?} &middot; \
judges: CNN {} ({} ragas), kNN {} &middot; Frechet reference: {}</p>",
        escape(&results.version),
        results.clips.len(),
        results.seconds,
        results.seeds,
        escape(&j.cnn),
        j.cnn_ragas,
        escape(&j.knn),
        escape(j.reference.as_deref().unwrap_or("none")),
    );
    h.push_str("<h2>Summary</h2>");
    h.push_str(&summary_table(&results.backends));
    h.push_str(
        "<p class=\"meta\">Mean &plusmn; standard deviation over clips. Top-k: share of clips \
whose requested raga is among the classifier's k best. FD: Frechet distance to the reference \
clips (only comparable between backends with equal clip counts). RTF: generation seconds per \
second of audio. * peak memory not isolated from earlier backends.</p>",
    );
    h.push_str("<h2>Spectral statistics</h2>");
    h.push_str(&spectral_table(&results.backends));
    for (section, confusion) in [("Charts", false), ("Confusion matrices", true)] {
        let _ = write!(h, "<h2>{section}</h2><div>");
        for c in charts.iter().filter(|c| c.confusion == confusion) {
            let _ = write!(
                h,
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                data_uri("image/png", &c.canvas.encode_png()?),
                escape(&c.title),
                escape(&c.file)
            );
        }
        h.push_str("</div>");
    }
    h.push_str("<h2>Clips</h2>");
    let mut groups: Vec<(String, Vec<&super::results::ClipRow>)> = Vec::new();
    for c in &results.clips {
        let title = match &c.prompt {
            Some(p) => format!("{} ({}): {p}", c.prompt_id.as_deref().unwrap_or(""), c.raga),
            None => format!("reference clips: {}", c.backend),
        };
        match groups.iter_mut().find(|g| g.0 == title) {
            Some(g) => g.1.push(c),
            None => groups.push((title, vec![c])),
        }
    }
    for (gi, (title, rows)) in groups.iter().enumerate() {
        let _ = write!(
            h,
            "<h3>{}</h3><table class=\"clips\" id=\"clips-{gi}\"><thead><tr><th class=\"l\">backend</th>\
<th class=\"l\">clip</th><th class=\"l\">raga</th><th>listen</th><th>spectrogram</th><th class=\"l\">CNN top 3</th>\
<th class=\"l\">kNN top 3</th><th>in-scale</th><th>JS</th><th>template rank</th><th>tonic (Hz)</th>\
<th>s</th></tr></thead><tbody>",
            escape(title)
        );
        for r in rows {
            let wav_path = out.join(&r.wav);
            let audio = read_audio(&wav_path)?;
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
<td><audio controls preload=\"metadata\" src=\"{}\"></audio></td>\
<td><img class=\"spec\" src=\"{}\" alt=\"spectrogram of {}\"></td>\
<td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.2}</td><td>{:.3}</td><td>{}</td><td>{:.1}{}</td>{}</tr>",
                escape(&r.backend),
                escape(&r.clip),
                escape(&r.raga),
                data_uri("audio/wav", &report_wav(&audio)?),
                data_uri("image/png", &thumbnail(&out.join(&r.png))?),
                escape(&r.clip),
                escape(&r.cnn_top3.replace(';', ", ")),
                escape(&r.knn_top3.replace(';', ", ")),
                r.in_scale_ratio,
                r.js_distance,
                r.template_rank,
                r.tonic_hz,
                match (r.tonic_given, r.estimated_tonic_hz) {
                    (true, _) => "",
                    (false, Some(_)) => " (est.)",
                    (false, None) => " (no pitch)",
                },
                opt_cell(r.generate_s, 2),
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str(
        "<h2>Backends</h2><table id=\"backends\"><thead><tr><th class=\"l\">backend</th>\
<th class=\"l\">source</th><th class=\"l\">settings</th></tr></thead><tbody>",
    );
    for run in &results.runs {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td></tr>",
            escape(&run.name),
            escape(&run.source.display().to_string()),
            escape(&run.settings.to_string()),
        );
    }
    h.push_str("</tbody></table>");
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Writes `charts/*.png` and `report.html` into `out`.
pub fn write_report(out: &Path, results: &Results) -> Result<()> {
    let charts = charts(&results.backends);
    for c in &charts {
        write_bytes_atomic(&out.join("charts").join(&c.file), &c.canvas.encode_png()?)?;
    }
    let html = report_html(out, results, &charts)?;
    write_bytes_atomic(&out.join("report.html"), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn report_audio_is_a_readable_wav_at_the_report_rate() {
        let a = Audio::new(vec![vec![0.25; 44100], vec![-0.25; 44100]], 44100, "t").unwrap();
        let bytes = report_wav(&a).unwrap();
        let r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(r.spec().sample_rate, REPORT_AUDIO_HZ);
        assert_eq!(r.spec().channels, 1);
        assert!((r.len() as i64 - 22050).abs() < 10, "{}", r.len());
    }
}
