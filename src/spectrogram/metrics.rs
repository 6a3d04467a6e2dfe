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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_invariant_and_bounded() {
        let r = [1.0, 2.0, 3.0];
        assert!(spectral_convergence(&r, &[2.0, 4.0, 6.0]) < 1e-12);
        assert!((spectral_convergence(&r, &[0.0; 3]) - 1.0).abs() < 1e-12);
        let sc = spectral_convergence(&r, &[1.0, 2.0, 2.0]);
        assert!(sc > 0.0 && sc < 1.0);
    }
}
