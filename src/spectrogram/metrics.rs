//! Quality measures for reconstructed spectrograms.

/// Spectral convergence `||R - g E|| / ||R||` of an estimate `E` against a
/// reference `R` (same layout), after the least-squares gain
/// `g = <R, E> / <E, E>` so that overall loudness does not count. 0 is a
/// perfect match; 1 is no better than silence.
pub fn spectral_convergence(reference: &[f32], estimate: &[f32]) -> f64 {
    let n = reference.len().min(estimate.len());
    let (r, e) = (&reference[..n], &estimate[..n]);
    let re: f64 = r.iter().zip(e).map(|(a, b)| *a as f64 * *b as f64).sum();
    let ee: f64 = e.iter().map(|b| *b as f64 * *b as f64).sum();
    let rr: f64 = r.iter().map(|a| *a as f64 * *a as f64).sum();
    if rr == 0.0 {
        return if ee == 0.0 { 0.0 } else { 1.0 };
    }
    let g = if ee > 0.0 { re / ee } else { 0.0 };
    let err: f64 = r
        .iter()
        .zip(e)
        .map(|(a, b)| (*a as f64 - g * *b as f64).powi(2))
        .sum();
    (err / rr).sqrt()
}

/// Spectral flux per frame of a mel spectrogram (channel 0): the root mean
/// square over mel bins of the change in compressed amplitude (`a^0.25`,
/// the image's scale, relative to the peak) from the previous frame, so
/// that a jump to a different spectrum counts whichever way it goes.
/// Frame 0 has no predecessor and gets 0.
pub fn spectral_flux(mel: &super::MelSpectrogram) -> Vec<f64> {
    let (m, t) = (mel.num_mels, mel.num_frames);
    let Some(data) = mel.channels.first() else {
        return Vec::new();
    };
    let peak = data
        .iter()
        .cloned()
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE) as f64;
    let c = |v: f32| (v as f64 / peak).max(0.0).powf(0.25);
    let mut flux = vec![0.0; t];
    for (i, f) in flux.iter_mut().enumerate().skip(1) {
        *f = ((0..m)
            .map(|b| (c(data[b * t + i]) - c(data[b * t + i - 1])).powi(2))
            .sum::<f64>()
            / m as f64)
            .sqrt();
    }
    flux
}

/// Spectral flux around clip joins compared with the rest of a signal.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SeamReport {
    /// Mean flux over frames within the radius of a join.
    pub at_joins: f64,
    /// Mean flux over all other frames.
    pub elsewhere: f64,
    /// 90th percentile of the other frames' flux.
    pub elsewhere_p90: f64,
}

/// Splits `flux` into frames within `radius` of any of `join_frames` and the
/// rest (frame 0 is left out of both).
pub fn seam_report(flux: &[f64], join_frames: &[usize], radius: usize) -> SeamReport {
    let near = |i: usize| {
        join_frames
            .iter()
            .any(|&j| i + radius >= j && i <= j + radius)
    };
    let mut at = Vec::new();
    let mut rest = Vec::new();
    for (i, &f) in flux.iter().enumerate().skip(1) {
        if near(i) {
            at.push(f);
        } else {
            rest.push(f);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    rest.sort_by(f64::total_cmp);
    let p90 = rest
        .get(((rest.len() as f64 * 0.9) as usize).min(rest.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    SeamReport {
        at_joins: mean(&at),
        elsewhere: mean(&rest),
        elsewhere_p90: p90,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_sees_an_onset_and_the_seam_report_places_it() {
        // 4 bins x 10 frames: quiet, then loud from frame 6 on
        let t = 10;
        let mut data = vec![0.01f32; 4 * t];
        for b in 0..4 {
            for i in 6..t {
                data[b * t + i] = 1.0;
            }
        }
        let mel = crate::spectrogram::MelSpectrogram {
            num_mels: 4,
            num_frames: t,
            channels: vec![data],
        };
        let flux = spectral_flux(&mel);
        let onset = flux
            .iter()
            .cloned()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(onset.0, 6);
        assert!(flux[3] < 1e-12);
        let r = seam_report(&flux, &[6], 1);
        assert!(r.at_joins > 0.1 && r.elsewhere < 1e-9, "{r:?}");
        let r = seam_report(&flux, &[2], 1);
        assert!(r.at_joins < 1e-9 && r.elsewhere > 0.0, "{r:?}");
    }

    #[test]
    fn scale_invariant_and_bounded() {
        let r = [1.0, 2.0, 3.0];
        assert!(spectral_convergence(&r, &[2.0, 4.0, 6.0]) < 1e-12);
        assert!((spectral_convergence(&r, &[0.0; 3]) - 1.0).abs() < 1e-12);
        let sc = spectral_convergence(&r, &[1.0, 2.0, 2.0]);
        assert!(sc > 0.0 && sc < 1.0);
    }
}
