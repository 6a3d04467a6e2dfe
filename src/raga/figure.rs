//! The `analyze` figure: the spectrogram with time (s) and frequency (Hz)
//! axes; a tonic-relative zoom with the pitch contour over a swara grid;
//! loudness; the PCD; the tonic, the classifier's top ragas and the
//! adherence measures as text and bars.

use super::analyze::Analysis;
use super::pitch_image::{level, mel_row};
use crate::captions::Raga;
use crate::plot::canvas::{heat, Canvas, Rgb, BLACK, GREY, LIGHT_GREY, WHITE};
use crate::spectrogram::{SpectrogramImage, SpectrogramParams};

const LEFT: usize = 78;
const PLOT_W: usize = 960;
const SPEC_H: usize = 256;
const PITCH_H: usize = 360;
const LOUD_H: usize = 70;
const BOTTOM_H: usize = 210;
/// Cents shown in the pitch panel, relative to the tonic.
const CENTS_RANGE: (f64, f64) = (-1200.0, 2400.0);
const CONTOUR: Rgb = [40, 235, 255];
/// Generic names of the twelve positions, for clips without a raga.
const GENERIC: [&str; 12] = [
    "S", "R1", "R2", "G2", "G3", "M1", "M2", "P", "D1", "D2", "N2", "N3",
];

/// Swara names of the twelve pitch classes for `raga` (its own spelling
/// where it uses the position, None where it does not), or the generic
/// names of all twelve.
pub fn swara_names(raga: Option<&Raga>) -> Vec<Option<String>> {
    match raga {
        None => GENERIC.iter().map(|s| Some(s.to_string())).collect(),
        Some(r) => {
            let mut names: Vec<Option<String>> = vec![None; 12];
            let notes = r.arohana.iter().chain(&r.avarohana);
            for s in notes.map(|n| n.swara).chain(r.anya.iter().copied()) {
                let pc = s.semitones() as usize % 12;
                names[pc].get_or_insert_with(|| s.name().to_string());
            }
            for pc in &r.pitch_classes {
                let pc = *pc as usize % 12;
                names[pc].get_or_insert_with(|| GENERIC[pc].to_string());
            }
            names
        }
    }
}

/// Picks about `n` round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Intensity (0-1) of the image at fractional mel row `pos` (0 = lowest)
/// and column `t`.
fn intensity(image: &SpectrogramImage, plane: usize, pos: f64, t: usize) -> f32 {
    let h = image.height;
    if !(0.0..=(h - 1) as f64).contains(&pos) {
        return 0.0;
    }
    let lo = (pos.floor() as usize).min(h - 2);
    let f = (pos - lo as f64) as f32;
    level(image, plane, lo, t) * (1.0 - f) + level(image, plane, lo + 1, t) * f
}

/// Draws the figure for `a`, whose audio made `image` with `params`;
/// `raga` labels the swara grid (generic names when None).
pub fn analysis_figure(
    title: &str,
    a: &Analysis,
    image: &SpectrogramImage,
    params: &SpectrogramParams,
    raga: Option<&Raga>,
) -> Canvas {
    let top_spec = 34;
    let top_pitch = top_spec + SPEC_H + 34;
    let top_loud = top_pitch + PITCH_H + 12;
    let top_bottom = top_loud + LOUD_H + 44;
    let height = top_bottom + BOTTOM_H + 10;
    let width = LEFT + PLOT_W + 24;
    let mut c = Canvas::new(width, height, WHITE);
    c.text(LEFT as i64, 10, title, BLACK, 1);

    let plane = usize::from(params.stereo);
    let row_of = |hz: f64| mel_row(params, hz);
    let col_of = |x: usize| ((x as f64 + 0.5) / PLOT_W as f64 * image.width as f64) as usize;
    let duration_s = image.width as f64 * params.step_ms as f64 / 1000.0;

    // Spectrogram panel: the whole mel range.
    for y in 0..SPEC_H {
        let pos = (SPEC_H - 1 - y) as f64 / (SPEC_H - 1) as f64 * (image.height - 1) as f64;
        for x in 0..PLOT_W {
            let v = intensity(image, plane, pos, col_of(x).min(image.width - 1));
            c.put((LEFT + x) as i64, (top_spec + y) as i64, heat(v));
        }
    }
    let mut last_label_y = f64::INFINITY;
    for hz in [
        100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    ] {
        if hz < params.min_hz as f64 || hz > params.max_hz as f64 {
            continue;
        }
        let y =
            top_spec as f64 + (SPEC_H - 1) as f64 * (1.0 - row_of(hz) / (image.height - 1) as f64);
        if last_label_y - y < 11.0 {
            continue;
        }
        last_label_y = y;
        c.fill_rect(LEFT as i64 - 5, y as i64, 5, 1, BLACK);
        let label = fmt_tick(hz);
        c.text(
            LEFT as i64 - 8 - Canvas::text_width(&label, 1) as i64,
            y as i64 - 4,
            &label,
            BLACK,
            1,
        );
    }
    c.text_up(
        4,
        (top_spec + SPEC_H / 2 + 40) as i64,
        "frequency Hz",
        BLACK,
        1,
    );
    c.stroke_rect(
        LEFT as i64 - 1,
        top_spec as i64 - 1,
        PLOT_W as i64 + 2,
        SPEC_H as i64 + 2,
        GREY,
    );
    time_axis(&mut c, top_spec + SPEC_H, duration_s, false);

    // Pitch panel: tonic-relative zoom, swara grid, contour.
    let tonic = a.tonic.hz;
    let y_of = |cents: f64| {
        top_pitch as f64
            + (PITCH_H - 1) as f64
                * (1.0 - (cents - CENTS_RANGE.0) / (CENTS_RANGE.1 - CENTS_RANGE.0))
    };
    for y in 0..PITCH_H {
        let cents = CENTS_RANGE.0
            + (CENTS_RANGE.1 - CENTS_RANGE.0) * (PITCH_H - 1 - y) as f64 / (PITCH_H - 1) as f64;
        let pos = row_of(tonic * (cents / 1200.0).exp2());
        for x in 0..PLOT_W {
            let v = intensity(image, plane, pos, col_of(x).min(image.width - 1));
            c.put((LEFT + x) as i64, (top_pitch + y) as i64, heat(0.8 * v));
        }
    }
    let names = swara_names(raga);
    for octave in -1..=2i32 {
        for (pc, name) in names.iter().enumerate() {
            let Some(name) = name else { continue };
            let cents = (octave * 1200 + pc as i32 * 100) as f64;
            if cents < CENTS_RANGE.0 || cents > CENTS_RANGE.1 {
                continue;
            }
            let y = y_of(cents).round() as i64;
            let colour = if pc == 0 {
                [235, 235, 235]
            } else {
                [120, 120, 140]
            };
            for x in (0..PLOT_W).step_by(if pc == 0 { 1 } else { 3 }) {
                c.put((LEFT + x) as i64, y, colour);
            }
            let mark = match octave {
                -1 => format!("{name}."),
                0 => name.clone(),
                1 => format!("{name}'"),
                _ => format!("{name}''"),
            };
            c.text(
                LEFT as i64 - 6 - Canvas::text_width(&mark, 1) as i64,
                y - 4,
                &mark,
                BLACK,
                1,
            );
        }
    }
    let hop = a.pitch.hop_s;
    let x_of = |t_s: f64| LEFT as f64 + t_s / duration_s.max(1e-9) * PLOT_W as f64;
    let mut last: Option<(f64, f64)> = None;
    for (i, (f, v)) in a.pitch.f0_hz.iter().zip(&a.pitch.voiced).enumerate() {
        // Frames outside the panel's range break the line rather than
        // being drawn along its edge.
        let point = (*v && *f > 0.0)
            .then(|| 1200.0 * (*f as f64 / tonic).log2())
            .filter(|c| (CENTS_RANGE.0..=CENTS_RANGE.1).contains(c))
            .map(|c| (x_of(i as f64 * hop), y_of(c)));
        if let (Some(p), Some(q)) = (last, point) {
            c.line(p.0, p.1, q.0, q.1, CONTOUR);
            c.line(p.0, p.1 + 1.0, q.0, q.1 + 1.0, CONTOUR);
        }
        last = point;
    }
    c.text_up(
        4,
        (top_pitch + PITCH_H / 2 + 60) as i64,
        "swara (tonic-relative)",
        BLACK,
        1,
    );
    c.stroke_rect(
        LEFT as i64 - 1,
        top_pitch as i64 - 1,
        PLOT_W as i64 + 2,
        PITCH_H as i64 + 2,
        GREY,
    );

    // Loudness panel.
    let db_y = |db: f64| {
        top_loud as f64 + (LOUD_H - 1) as f64 * (1.0 - (db.clamp(-60.0, 0.0) + 60.0) / 60.0)
    };
    for db in [-60.0, -30.0, 0.0] {
        let y = db_y(db) as i64;
        for x in (0..PLOT_W).step_by(4) {
            c.put((LEFT + x) as i64, y, LIGHT_GREY);
        }
        let label = format!("{db:.0} dB");
        c.text(
            LEFT as i64 - 8 - Canvas::text_width(&label, 1) as i64,
            y - 4,
            &label,
            BLACK,
            1,
        );
    }
    let curve = &a.loudness.curve_dbfs;
    for k in 1..curve.len() {
        let t0 = (k - 1) as f64 * a.loudness.hop_s;
        c.line(
            x_of(t0),
            db_y(curve[k - 1] as f64),
            x_of(t0 + a.loudness.hop_s),
            db_y(curve[k] as f64),
            [200, 60, 40],
        );
    }
    c.stroke_rect(
        LEFT as i64 - 1,
        top_loud as i64 - 1,
        PLOT_W as i64 + 2,
        LOUD_H as i64 + 2,
        GREY,
    );
    time_axis(&mut c, top_loud + LOUD_H, duration_s, true);

    pcd_panel(&mut c, a, &names, top_bottom);
    facts_panel(&mut c, a, top_bottom);
    c
}

/// Tick marks and second labels under a panel ending at row `y`.
fn time_axis(c: &mut Canvas, y: usize, duration_s: f64, label: bool) {
    for t in ticks(0.0, duration_s, 16) {
        let x = LEFT as f64 + t / duration_s.max(1e-9) * PLOT_W as f64;
        c.fill_rect(x as i64, y as i64 + 1, 1, 5, BLACK);
        let s = fmt_tick(t);
        c.text(
            x as i64 - Canvas::text_width(&s, 1) as i64 / 2,
            y as i64 + 9,
            &s,
            BLACK,
            1,
        );
    }
    if label {
        c.text(
            (LEFT + PLOT_W / 2 - 40) as i64,
            y as i64 + 22,
            "time (s)",
            BLACK,
            1,
        );
    }
}

/// The PCD as bars with the swara positions marked.
fn pcd_panel(c: &mut Canvas, a: &Analysis, names: &[Option<String>], top: usize) {
    let (x0, w, h) = (LEFT, 480usize, BOTTOM_H - 40);
    let y0 = top + 16;
    c.text(
        x0 as i64,
        top as i64,
        "pitch-class distribution (10-cent bins from Sa)",
        BLACK,
        1,
    );
    let max = a.pcd.iter().cloned().fold(0.0f64, f64::max).max(1e-12);
    let bw = w / a.pcd.len().max(1);
    for (i, v) in a.pcd.iter().enumerate() {
        let bh = (v / max * h as f64).round() as i64;
        c.fill_rect(
            (x0 + i * bw) as i64,
            (y0 + h) as i64 - bh,
            bw as i64,
            bh,
            heat(0.55),
        );
    }
    for (pc, name) in names.iter().enumerate() {
        let x = (x0 + pc * 10 * bw) as i64 + bw as i64 / 2;
        c.fill_rect(x, (y0 + h) as i64, 1, 5, BLACK);
        if let Some(n) = name {
            c.text(
                x - Canvas::text_width(n, 1) as i64 / 2,
                (y0 + h + 8) as i64,
                n,
                BLACK,
                1,
            );
        }
    }
    c.stroke_rect(
        x0 as i64 - 1,
        y0 as i64 - 1,
        (bw * a.pcd.len()) as i64 + 2,
        h as i64 + 2,
        GREY,
    );
}

/// Tonic, loudness, the classifier's top ragas and adherence, as text
/// (the top ragas with score bars).
fn facts_panel(c: &mut Canvas, a: &Analysis, top: usize) {
    let mut lines: Vec<(String, Option<f64>)> = Vec::new();
    let t = &a.tonic;
    let how = if t.given { "given" } else { "estimated" };
    lines.push((format!("tonic {:.1} Hz ({how})", t.hz), None));
    if let Some(d) = t.drift_cents {
        lines.push((
            format!("estimate {:.1} Hz, drift {d:.0} cents", t.estimated_hz),
            None,
        ));
    }
    lines.push((
        format!(
            "voiced {:.0}%  loudness {:.1} dBFS RMS, peak {:.1}",
            a.voiced_fraction * 100.0,
            a.loudness.rms_dbfs,
            a.loudness.peak_dbfs
        ),
        None,
    ));
    lines.push((format!("top ragas ({}):", a.classifier), None));
    for (raga, score) in &a.top {
        lines.push((format!("{score:.3} {raga}"), Some(*score)));
    }
    if let Some(ad) = &a.adherence {
        lines.push((format!("adherence to {}:", ad.raga), None));
        lines.push((
            format!(
                " in-scale {:.0}% (chance {:.0}%), illegal {:.0}%",
                ad.membership.in_scale_ratio * 100.0,
                ad.membership.chance_level * 100.0,
                ad.membership.illegal_swara_rate * 100.0
            ),
            None,
        ));
        lines.push((
            format!(
                " PCD JS distance {:.3}, template rank {} of {}",
                ad.js_distance, ad.template_rank, ad.templates
            ),
            None,
        ));
    } else if let Some((r, d)) = a.nearest_templates.first() {
        lines.push((format!("nearest scale template: {r} (JS {d:.3})"), None));
    }
    let x0 = (LEFT + 520) as i64;
    for (k, (text, bar)) in lines.iter().enumerate() {
        let y = (top + k * 13) as i64;
        match bar {
            Some(v) => {
                let w = (v.clamp(0.0, 1.0) * 120.0).round() as i64;
                c.fill_rect(x0, y, 120, 9, LIGHT_GREY);
                c.fill_rect(x0, y, w, 9, heat(0.45));
                c.text(x0 + 128, y, text, BLACK, 1);
            }
            None => c.text(x0, y, text, BLACK, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 5.12, 10), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            ticks(0.0, 5.12, 20),
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
        );
        assert_eq!(
            ticks(0.0, 60.0, 10),
            vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        );
    }

    #[test]
    fn swara_names_follow_the_raga() {
        let vocab = Vocabulary::builtin();
        let n = swara_names(Some(vocab.raga("Mohanam").unwrap()));
        let used: Vec<(usize, &str)> = n
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_deref().map(|s| (i, s)))
            .collect();
        assert_eq!(
            used,
            vec![(0, "S"), (2, "R2"), (4, "G3"), (7, "P"), (9, "D2")]
        );
        assert_eq!(swara_names(None).iter().flatten().count(), 12);
    }
}
