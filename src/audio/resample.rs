//! Sample-rate conversion with rubato's FFT resampler (band-limited,
//! synchronous: the right tool for a fixed ratio between file rates).

use rubato::{FftFixedIn, Resampler};

use super::Audio;
use crate::error::{Error, Result};

/// Input frames per resampler call.
const CHUNK_FRAMES: usize = 4096;

/// The largest sample magnitude the resampler takes. Far beyond any audio
/// (full scale is 1), and far enough below f32's range that its FFT cannot
/// overflow to infinity.
pub const MAX_ABS_SAMPLE: f32 = 1e30;

/// Converts `audio` to `target_hz`. Returns a copy when the rate already
/// matches. The output has `round(len * target / source)` samples; the
/// resampler's delay is removed to within half an output sample.
pub fn resample(audio: &Audio, target_hz: u32) -> Result<Audio> {
    for hz in [audio.sample_rate_hz, target_hz] {
        if let Some(why) = crate::limits::sample_rate_problem(hz) {
            return Err(Error::param("sample_rate_hz", why));
        }
    }
    if audio.sample_rate_hz == target_hz {
        return Ok(audio.clone());
    }
    let peak = audio.peak();
    if peak > MAX_ABS_SAMPLE {
        return Err(Error::Resample(format!(
            "sample values reach {peak:e}, far outside any audio's range (full scale is 1; \
             at most {MAX_ABS_SAMPLE:e} can be resampled)"
        )));
    }
    crate::panic_guard::guarded(
        || convert(audio, target_hz),
        |why| Error::Resample(format!("the resampler failed ({why})")),
    )
}

fn convert(audio: &Audio, target_hz: u32) -> Result<Audio> {
    let n_ch = audio.num_channels();
    let mut rs = FftFixedIn::<f32>::new(
        audio.sample_rate_hz as usize,
        target_hz as usize,
        CHUNK_FRAMES,
        2,
        n_ch,
    )
    .map_err(|e| Error::Resample(e.to_string()))?;
    let len_in = audio.len_samples();
    let want = ((len_in as f64) * target_hz as f64 / audio.sample_rate_hz as f64).round() as usize;
    let delay = rs.output_delay();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(want + delay + CHUNK_FRAMES); n_ch];
    let mut pos = 0;
    let err = |e: rubato::ResampleError| Error::Resample(e.to_string());
    while out[0].len() < want + delay {
        let need = rs.input_frames_next();
        let block = if pos + need <= len_in {
            let chunk: Vec<&[f32]> = audio.channels.iter().map(|c| &c[pos..pos + need]).collect();
            rs.process(&chunk, None).map_err(err)?
        } else if pos < len_in {
            let chunk: Vec<&[f32]> = audio.channels.iter().map(|c| &c[pos..]).collect();
            rs.process_partial(Some(&chunk), None).map_err(err)?
        } else {
            rs.process_partial(None::<&[&[f32]]>, None).map_err(err)?
        };
        pos += need;
        for (o, b) in out.iter_mut().zip(block) {
            o.extend_from_slice(&b);
        }
    }
    let channels = out
        .into_iter()
        .map(|c| c[delay..delay + want].to_vec())
        .collect();
    Audio::new(channels, target_hz, "resampled audio")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * freq * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    #[test]
    fn absurd_sample_values_are_refused_not_a_panic() {
        // found by fuzzing: a float WAV whose samples reach ~1e37 made the
        // resampler's FFT overflow and rubato panic
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fuzz/huge-float-samples.wav");
        let audio = crate::audio::read_audio(&path).unwrap();
        let e = resample(&audio, 22_050).unwrap_err().to_string();
        assert!(e.contains("far outside any audio's range"), "{e}");
        let loud = Audio::new(vec![vec![1e31; 8000]], 8000, "t").unwrap();
        assert!(resample(&loud, 16_000).is_err());
    }

    #[test]
    fn sine_survives_rate_changes() {
        for (from, to) in [(48000u32, 44100u32), (22050, 44100), (44100, 16000)] {
            let n = from as usize / 2;
            let a = Audio::new(vec![sine(440.0, from, n)], from, "t").unwrap();
            let b = resample(&a, to).unwrap();
            let expect_len = (n as f64 * to as f64 / from as f64).round() as usize;
            assert_eq!(b.len_samples(), expect_len);
            // The FFT resampler's delay is rounded to whole samples, so
            // compare against the sine shifted by up to half an output sample.
            let m = expect_len / 10;
            let err = (-10..=10)
                .map(|d| {
                    let delay = d as f32 * 0.05;
                    (m..expect_len - m)
                        .map(|i| {
                            let t = (i as f32 - delay) / to as f32;
                            (b.channels[0][i] - (t * 440.0 * std::f32::consts::TAU).sin()).abs()
                        })
                        .fold(0.0f32, f32::max)
                })
                .fold(f32::MAX, f32::min);
            assert!(err < 0.005, "{from}->{to}: max error {err}");
        }
    }
}
