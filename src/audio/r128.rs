//! Loudness to a delivery target: integrated loudness (LUFS) and true peak
//! (dBTP) measured by EBU R128 / ITU-R BS.1770 (the `ebur128` crate), a
//! gain to the target and a look-ahead limiter under a true-peak ceiling.

use serde::Serialize;

use super::mix::{apply_gains, limiter_gains};
use crate::error::{Error, Result};

/// Integrated loudness of web video platforms, LUFS.
pub const WEB_LUFS: f64 = -14.0;
/// Integrated loudness of EBU R128 broadcast, LUFS.
pub const BROADCAST_LUFS: f64 = -23.0;
/// The true-peak ceiling of EBU R128 and of most platforms, dBTP.
pub const CEILING_DBTP: f64 = -1.0;
/// The loudest and quietest targets accepted, LUFS.
pub const TARGET_LUFS: std::ops::RangeInclusive<f64> = -40.0..=-5.0;
/// How far the result may miss the target, LU.
pub const TOLERANCE_LU: f64 = 0.2;
/// The most gain ever applied, dB: more would only raise noise.
const MAX_GAIN_DB: f64 = 40.0;

/// What a measurement found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    /// Integrated (gated) loudness, LUFS (`-inf` for silence).
    pub integrated_lufs: f64,
    /// The highest true peak over all channels, dBTP.
    pub true_peak_dbtp: f64,
}

/// What [`to_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Levelled {
    /// Before.
    pub before: Measured,
    /// After.
    pub after: Measured,
    /// The gain applied before limiting, dB.
    pub gain_db: f64,
    /// The limiter's sample ceiling, dBFS (below the true-peak ceiling by
    /// the margin inter-sample peaks needed).
    pub limiter_ceiling_dbfs: f64,
}

fn r128_error(context: &str, e: ebur128::Error) -> Error {
    Error::Numeric {
        context: context.to_string(),
        reason: format!("loudness measurement failed: {e:?}"),
    }
}

/// Measures planar `channels` at `sample_rate_hz`; `context` names the
/// audio in errors.
pub fn measure(channels: &[Vec<f32>], sample_rate_hz: u32, context: &str) -> Result<Measured> {
    let mode = ebur128::Mode::I | ebur128::Mode::TRUE_PEAK;
    let mut meter = ebur128::EbuR128::new(channels.len() as u32, sample_rate_hz, mode)
        .map_err(|e| r128_error(context, e))?;
    let planes: Vec<&[f32]> = channels.iter().map(Vec::as_slice).collect();
    meter
        .add_frames_planar_f32(&planes)
        .map_err(|e| r128_error(context, e))?;
    let integrated_lufs = meter
        .loudness_global()
        .map_err(|e| r128_error(context, e))?;
    let mut peak = 0f64;
    for c in 0..channels.len() as u32 {
        peak = peak.max(meter.true_peak(c).map_err(|e| r128_error(context, e))?);
    }
    Ok(Measured {
        integrated_lufs,
        true_peak_dbtp: 20.0 * peak.log10(),
    })
}

/// `input` brought to `target_lufs` integrated loudness with no true
/// peak above `ceiling_dbtp`: one gain, then a look-ahead limiter (5 ms,
/// 100 ms release) where the gain pushes peaks past the ceiling; repeated
/// until both hold (limiting lowers the loudness a little, and
/// inter-sample peaks can sit above the samples). Silence, or audio too
/// quiet to reach the target with 40 dB of gain, is refused.
pub fn to_target(
    input: &[Vec<f32>],
    sample_rate_hz: u32,
    target_lufs: f64,
    ceiling_dbtp: f64,
    context: &str,
) -> Result<(Vec<Vec<f32>>, Levelled)> {
    if !TARGET_LUFS.contains(&target_lufs) {
        return Err(Error::param(
            "loudness",
            format!(
                "{target_lufs} LUFS is outside {}..={} LUFS",
                TARGET_LUFS.start(),
                TARGET_LUFS.end()
            ),
        ));
    }
    let before = measure(input, sample_rate_hz, context)?;
    if !before.integrated_lufs.is_finite() {
        return Err(Error::InvalidAudio {
            context: context.to_string(),
            reason: "silent: there is nothing to bring to a loudness target".into(),
        });
    }
    let mut gain_db = target_lufs - before.integrated_lufs;
    if gain_db > MAX_GAIN_DB {
        return Err(Error::InvalidAudio {
            context: context.to_string(),
            reason: format!(
                "{:.1} LUFS is too quiet to bring to {target_lufs} LUFS ({gain_db:.1} dB of gain)",
                before.integrated_lufs
            ),
        });
    }
    let lookahead = (sample_rate_hz as usize / 200).max(1);
    let release = (sample_rate_hz as usize / 10).max(1);
    let mut margin_db = 0.3;
    let mut channels: Vec<Vec<f32>> = input.to_vec();
    for _ in 0..8 {
        let gain = super::db_to_gain(gain_db) as f32;
        for (out, src) in channels.iter_mut().zip(input) {
            for (o, s) in out.iter_mut().zip(src) {
                *o = s * gain;
            }
        }
        let limiter_ceiling_dbfs = ceiling_dbtp - margin_db;
        let ceiling = super::db_to_gain(limiter_ceiling_dbfs) as f32;
        let gains = limiter_gains(&channels, ceiling, lookahead, release);
        apply_gains(&mut channels, &gains);
        let after = measure(&channels, sample_rate_hz, context)?;
        if after.true_peak_dbtp > ceiling_dbtp {
            margin_db += after.true_peak_dbtp - ceiling_dbtp + 0.1;
            continue;
        }
        let miss = target_lufs - after.integrated_lufs;
        if miss.abs() > TOLERANCE_LU && gain_db + miss <= MAX_GAIN_DB {
            gain_db += miss;
            continue;
        }
        let levelled = Levelled {
            before,
            after,
            gain_db,
            limiter_ceiling_dbfs,
        };
        return Ok((channels, levelled));
    }
    Err(Error::Numeric {
        context: context.to_string(),
        reason: format!(
            "could not reach {target_lufs} LUFS under {ceiling_dbtp} dBTP (the audio's peaks are too far above its loudness)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_burst(sr: u32, seconds: f64, amp: f32) -> Vec<Vec<f32>> {
        // deterministic noise with sharp transients: a hard case for peaks
        let n = (sr as f64 * seconds) as usize;
        let mut state = 12345u32;
        let mut ch: Vec<Vec<f32>> = (0..2).map(|_| Vec::with_capacity(n)).collect();
        for i in 0..n {
            for c in ch.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let white = (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
                let env = if i % (sr as usize / 2) < 400 {
                    1.0
                } else {
                    0.2
                };
                c.push(amp * env * white);
            }
        }
        ch
    }

    #[test]
    fn a_sine_at_full_scale_reads_as_the_standard_says() {
        // BS.1770: a 997 Hz sine at 0 dBFS in one channel reads -3.01 LUFS,
        // so in both channels of a stereo pair it reads 0 LUFS
        let sr = 48_000;
        let sine: Vec<f32> = (0..sr * 5)
            .map(|i| (2.0 * std::f32::consts::PI * 997.0 * i as f32 / sr as f32).sin())
            .collect();
        let m = measure(&[sine.clone(), sine], sr as u32, "sine").unwrap();
        assert!((m.integrated_lufs - 0.0).abs() < 0.1, "{m:?}");
        assert!(m.true_peak_dbtp.abs() < 0.1, "{m:?}");
    }

    #[test]
    fn loud_transients_reach_the_target_under_the_ceiling() {
        for target in [WEB_LUFS, BROADCAST_LUFS] {
            let sr = 48_000;
            let (ch, done) = to_target(
                &noise_burst(sr, 6.0, 0.05),
                sr,
                target,
                CEILING_DBTP,
                "noise",
            )
            .unwrap();
            assert!(
                (done.after.integrated_lufs - target).abs() <= TOLERANCE_LU,
                "{done:?}"
            );
            assert!(done.after.true_peak_dbtp <= CEILING_DBTP, "{done:?}");
            let again = measure(&ch, sr, "noise").unwrap();
            assert_eq!(again, done.after);
        }
    }

    #[test]
    fn silence_and_absurd_targets_are_refused() {
        let silent = vec![vec![0.0f32; 48_000]; 2];
        let e = to_target(&silent, 48_000, -14.0, -1.0, "mix.wav").unwrap_err();
        assert!(
            e.to_string().contains("mix.wav") && e.to_string().contains("silent"),
            "{e}"
        );
        let e = to_target(&silent, 48_000, 3.0, -1.0, "mix.wav").unwrap_err();
        assert!(e.to_string().contains("loudness"), "{e}");
    }
}
