//! Riffusion's loudness post-processing for reconstructed audio.

/// Peak-normalises, applies gain to bring the RMS level to `-12 dBFS`
/// (clipping at full scale, as 16-bit audio does), then peak-normalises to
/// `-0.1 dBFS`: riffusion's `apply_filters` without compression. Silence is
/// left as it is. All channels share one gain.
pub fn riffusion_loudness(channels: &mut [Vec<f32>]) {
    let peak = |ch: &[Vec<f32>]| ch.iter().flatten().fold(0.0f32, |m, s| m.max(s.abs()));
    let p = peak(channels);
    if p == 0.0 {
        return;
    }
    let count = channels.iter().map(Vec::len).sum::<usize>().max(1);
    let mean_sq = channels
        .iter()
        .flatten()
        .map(|s| (s / p) as f64 * (s / p) as f64)
        .sum::<f64>()
        / count as f64;
    let rms = mean_sq.sqrt();
    let gain = if rms > 0.0 {
        (10f64.powf(-12.0 / 20.0) / rms) as f32
    } else {
        1.0
    };
    for s in channels.iter_mut().flatten() {
        *s = (*s / p * gain).clamp(-1.0, 1.0);
    }
    let p2 = peak(channels);
    let target = 10f32.powf(-0.1 / 20.0);
    for s in channels.iter_mut().flatten() {
        *s *= target / p2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_ends_at_minus_point_one_dbfs() {
        let mut ch = vec![(0..4410).map(|i| 0.01 * (i as f32 * 0.05).sin()).collect::<Vec<_>>()];
        riffusion_loudness(&mut ch);
        let peak = ch[0].iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((20.0 * peak.log10() + 0.1).abs() < 1e-3, "peak {peak}");
    }

    #[test]
    fn spiky_signal_is_clipped_at_the_rms_stage() {
        // One spike over silence: -12 dBFS RMS needs far more than full scale.
        let mut ch = vec![vec![0.0f32; 1000]];
        ch[0][10] = 0.5;
        ch[0][20] = 0.2;
        riffusion_loudness(&mut ch);
        // Both samples clip to full scale, then normalise to -0.1 dBFS.
        assert!((ch[0][10] - ch[0][20]).abs() < 1e-6);
    }

    #[test]
    fn silence_stays_silent() {
        let mut ch = vec![vec![0.0f32; 10]];
        riffusion_loudness(&mut ch);
        assert!(ch[0].iter().all(|s| *s == 0.0));
    }
}
