//! Charts drawn on a [`Canvas`]: confusion matrices, horizontal bars and
//! line charts.

use super::canvas::{heat, Canvas, BLACK, GREY, LIGHT_GREY, WHITE};

/// Longest label drawn, in characters (longer ones are cut with `.`).
const MAX_LABEL: usize = 18;

fn short(label: &str) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= MAX_LABEL {
        label.to_string()
    } else {
        chars[..MAX_LABEL - 1].iter().collect::<String>() + "."
    }
}

/// A confusion matrix: row `i` = true class `labels[i]`, column `j` =
/// predicted class; `counts[i][j]` clips. Cells are coloured by the share
/// of their row, and hold the count when there is room.
pub fn confusion_matrix(title: &str, labels: &[String], counts: &[Vec<usize>]) -> Canvas {
    let n = labels.len().max(1);
    let cell = (640 / n).clamp(10, 36);
    let label_px = labels
        .iter()
        .map(|l| Canvas::text_width(&short(l), 1))
        .max()
        .unwrap_or(0)
        + 12;
    let (left, top) = (label_px + 14, label_px + 34);
    let width = (left + n * cell + 20).max(Canvas::text_width(title, 1) + 16);
    let height = top + n * cell + 30;
    let mut c = Canvas::new(width, height, WHITE);
    c.text(8, 8, title, BLACK, 1);
    c.text(left as i64, 22, "predicted ->", GREY, 1);
    c.text_up(2, (top + n * cell) as i64, "true ->", GREY, 1);
    for (i, label) in labels.iter().enumerate() {
        let s = short(label);
        let y = top + i * cell + cell / 2 - 4;
        c.text(
            (left - 6 - Canvas::text_width(&s, 1)) as i64,
            y as i64,
            &s,
            BLACK,
            1,
        );
        let x = left + i * cell + cell / 2 - 4;
        c.text_up(x as i64, (top - 6) as i64, &s, BLACK, 1);
    }
    for (i, row) in counts.iter().enumerate().take(n) {
        let total: usize = row.iter().sum();
        for (j, &k) in row.iter().enumerate().take(n) {
            let share = if total > 0 {
                k as f32 / total as f32
            } else {
                0.0
            };
            let (x, y) = ((left + j * cell) as i64, (top + i * cell) as i64);
            c.fill_rect(x, y, cell as i64, cell as i64, heat(share));
            let text = k.to_string();
            if k > 0 && Canvas::text_width(&text, 1) + 2 <= cell && cell >= 10 {
                let ink = if share > 0.6 { BLACK } else { WHITE };
                let tx = x + (cell - Canvas::text_width(&text, 1)) as i64 / 2;
                c.text(tx, y + (cell as i64 - 8) / 2, &text, ink, 1);
            }
        }
    }
    c.stroke_rect(
        left as i64 - 1,
        top as i64 - 1,
        (n * cell) as i64 + 2,
        (n * cell) as i64 + 2,
        GREY,
    );
    c
}

/// Horizontal bars: one row per (label, value), values in [0, `max`],
/// each labelled with `format(value)`.
pub fn bars(
    title: &str,
    rows: &[(String, f64)],
    max: f64,
    format: &dyn Fn(f64) -> String,
) -> Canvas {
    let label_px = rows
        .iter()
        .map(|(l, _)| Canvas::text_width(&short(l), 1))
        .max()
        .unwrap_or(0);
    let bar_px = 300;
    let (left, top, row_h) = (label_px + 16, 30, 16);
    let width = left + bar_px + 90;
    let height = top + rows.len() * row_h + 12;
    let mut c = Canvas::new(width, height, WHITE);
    c.text(8, 8, title, BLACK, 1);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = (top + i * row_h) as i64;
        let s = short(label);
        c.text(
            (left - 8 - Canvas::text_width(&s, 1)) as i64,
            y + 3,
            &s,
            BLACK,
            1,
        );
        c.fill_rect(
            left as i64,
            y + 1,
            bar_px as i64,
            (row_h - 3) as i64,
            LIGHT_GREY,
        );
        let frac = if max > 0.0 && v.is_finite() {
            (v / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let w = (frac * bar_px as f64).round() as i64;
        c.fill_rect(
            left as i64,
            y + 1,
            w,
            (row_h - 3) as i64,
            heat(0.35 + 0.4 * frac as f32),
        );
        c.text((left + bar_px + 8) as i64, y + 3, &format(*v), BLACK, 1);
    }
    c
}

/// A line chart of one or more series of (x, y) points on shared axes,
/// each series in its own colour with a legend; non-finite points are
/// skipped.
pub fn line_chart(title: &str, x_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> Canvas {
    let (w, h) = (640usize, 360usize);
    let (left, right, top, bottom) = (70i64, 20i64, 30i64, 40i64);
    let mut c = Canvas::new(w, h, WHITE);
    c.text(8, 8, title, BLACK, 1);
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.1.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        c.text(left, h as i64 / 2, "no data", GREY, 1);
        return c;
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = (
        (w as i64 - left - right) as f64,
        (h as i64 - top - bottom) as f64,
    );
    let px = |x: f64| left as f64 + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| top as f64 + (1.0 - (y - y0) / (y1 - y0)) * ph;
    c.stroke_rect(left, top, pw as i64 + 1, ph as i64 + 1, GREY);
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let label = format!("{y:.3}");
        let yy = py(y) as i64;
        c.line(left as f64 - 4.0, yy as f64, left as f64, yy as f64, GREY);
        c.text(
            left - 8 - Canvas::text_width(&label, 1) as i64,
            yy - 4,
            &label,
            BLACK,
            1,
        );
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        let label = format!("{x:.0}");
        let xx = px(x);
        c.text(
            xx as i64 - Canvas::text_width(&label, 1) as i64 / 2,
            top + ph as i64 + 6,
            &label,
            BLACK,
            1,
        );
    }
    c.text(
        left + pw as i64 / 2 - Canvas::text_width(x_label, 1) as i64 / 2,
        h as i64 - 14,
        x_label,
        BLACK,
        1,
    );
    for (k, (name, points)) in series.iter().enumerate() {
        let colour = heat(0.2 + 0.6 * k as f32 / series.len().max(1) as f32);
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            let p = (px(x), py(y));
            if let Some(q) = prev {
                c.line(q.0, q.1, p.0, p.1, colour);
            } else {
                c.put(p.0 as i64, p.1 as i64, colour);
            }
            prev = Some(p);
        }
        let ly = top + 8 + 12 * k as i64;
        let lx = w as i64 - right - 8 - Canvas::text_width(name, 1) as i64 - 16;
        c.fill_rect(lx, ly + 2, 10, 4, colour);
        c.text(lx + 14, ly, name, BLACK, 1);
    }
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_chart_draws_each_series() {
        let a = (
            "loss".to_string(),
            vec![(0.0, 1.0), (5.0, 0.5), (10.0, 0.2)],
        );
        let c = line_chart("t", "step", std::slice::from_ref(&a));
        let coloured = |c: &Canvas| {
            c.rgb
                .chunks(3)
                .filter(|p| p[0] != p[1] || p[1] != p[2])
                .count()
        };
        let one = coloured(&c);
        assert!(one > 100, "{one}");
        let b = ("aux".to_string(), vec![(0.0, f64::NAN), (10.0, 0.9)]);
        assert!(coloured(&line_chart("t", "step", &[a, b])) > one);
        let empty = line_chart("t", "step", &[]);
        assert_eq!(coloured(&empty), 0);
    }

    use super::*;

    #[test]
    fn confusion_cells_are_coloured_by_row_share() {
        let labels = vec!["Kalyani".to_string(), "Todi".to_string()];
        let counts = vec![vec![3, 1], vec![0, 4]];
        let c = confusion_matrix("test", &labels, &counts);
        let n = 2;
        let cell = (640 / n).clamp(10, 36);
        let label_px = Canvas::text_width("Kalyani", 1) + 12;
        let (left, top) = (label_px + 14, label_px + 34);
        // Corner pixels of each cell (away from the digits).
        let at = |i: usize, j: usize| c.get(left + j * cell + 1, top + i * cell + 1);
        assert_eq!(at(0, 0), heat(0.75));
        assert_eq!(at(0, 1), heat(0.25));
        assert_eq!(at(1, 0), heat(0.0));
        assert_eq!(at(1, 1), heat(1.0));
    }

    #[test]
    fn bars_scale_with_value_and_long_labels_are_cut() {
        assert_eq!(short("Mayamalavagowla raga long"), "Mayamalavagowla r.");
        let rows = vec![("a".to_string(), 1.0), ("b".to_string(), 0.5)];
        let c = bars("t", &rows, 1.0, &|v| format!("{v:.2}"));
        let (left, top) = (Canvas::text_width("a", 1) + 16, 30);
        let filled = |row: usize| {
            (0..300)
                .filter(|x| c.get(left + x, top + row * 16 + 5) != LIGHT_GREY)
                .count()
        };
        assert_eq!(filled(0), 300);
        assert_eq!(filled(1), 150);
    }
}
