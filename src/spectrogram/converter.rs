//! Audio <-> mel amplitudes, and the one-call conversions between audio and
//! spectrogram images.

use rayon::prelude::*;

use super::griffin_lim::{GriffinLimOptions, PhaseInit};
use super::image::{
    image_from_mel, mel_from_image, LoadedImage, SpectrogramImage, DEFAULT_MAX_VALUE,
};
use super::mel::MelFilterbank;
use super::segmented::{reconstruct_channel, SEGMENT_FRAMES};
use super::stft::{reflect_pad, Spectrum, Stft};
use super::{MelSpectrogram, SpectrogramParams};
use crate::audio::{normalize_loudness, Audio, Loudness};
use crate::error::{Error, Result};
use crate::progress::Progress;
use rustfft::num_complex::Complex32;

/// Riffusion feeds 16-bit sample values (not `[-1, 1]`) to the STFT; scaling
/// by this keeps amplitudes, and so EXIF tag 11080, in the same units.
pub const INT16_SCALE: f32 = 32768.0;

/// How mel amplitudes are mapped back to linear STFT magnitudes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MelInverse {
    /// Minimum-norm least squares clamped at zero (current torchaudio).
    LeastSquares,
    /// Non-negative least squares by accelerated projected gradient.
    Nnls {
        /// Projected-gradient iterations after the least-squares start.
        iterations: usize,
    },
}

/// Everything that controls image -> audio.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InversionOptions {
    /// Mel -> linear method.
    pub mel_inverse: MelInverse,
    /// Phase reconstruction.
    pub griffin_lim: GriffinLimOptions,
    /// Levelling of the output.
    pub loudness: Loudness,
}

/// Named speed / quality trade-offs for image -> audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    /// NNLS mel inverse, phase started by PGHI, the parameters' Griffin-Lim
    /// iterations (32 by default).
    #[default]
    Fast,
    /// As `fast` with 4x the Griffin-Lim iterations: ~3x slower, closer to
    /// the image, less phasey.
    High,
    /// Riffusion's recipe: random initial phase (seeded), the parameters'
    /// iterations; NNLS instead of least squares for the mel inverse.
    Riffusion,
}

crate::choices!(Quality, "quality", [
    Fast => "fast": "NNLS mel inverse, PGHI phase, the preset's Griffin-Lim iterations",
    High => "high": "as fast with 4x the iterations (about 3x slower)",
    Riffusion => "riffusion": "riffusion's recipe: seeded random initial phase",
]);

impl InversionOptions {
    /// The options for a quality level, seed and parameter set.
    pub fn for_quality(quality: Quality, params: &SpectrogramParams, seed: u64) -> Self {
        let iterations = params.griffin_lim_iters as usize;
        let (init, iterations) = match quality {
            Quality::Fast => (PhaseInit::Pghi, iterations),
            Quality::High => (PhaseInit::Pghi, iterations * 4),
            Quality::Riffusion => (PhaseInit::Random, iterations),
        };
        InversionOptions {
            mel_inverse: MelInverse::Nnls { iterations: 20 },
            griffin_lim: GriffinLimOptions {
                iterations,
                momentum: 0.99,
                seed,
                init,
            },
            loudness: Loudness::default(),
        }
    }
}

/// What a user chooses for image -> audio; the rest follows from the
/// image's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InversionSettings {
    /// Speed / quality trade-off.
    pub quality: Quality,
    /// Seed for the random parts of phase reconstruction.
    pub seed: u64,
    /// Griffin-Lim iterations, overriding what `quality` implies.
    pub iterations: Option<usize>,
    /// Levelling of the output.
    pub loudness: Loudness,
}

impl InversionSettings {
    /// The full options for an image with `params`.
    pub fn options(&self, params: &SpectrogramParams) -> InversionOptions {
        let mut o = InversionOptions::for_quality(self.quality, params, self.seed);
        if let Some(n) = self.iterations {
            o.griffin_lim.iterations = n;
        }
        o.loudness = self.loudness;
        o
    }
}

/// Converts between audio and mel amplitudes for one parameter set.
#[derive(Debug)]
pub struct SpectrogramConverter {
    params: SpectrogramParams,
    stft: Stft,
    mel: MelFilterbank,
}

impl SpectrogramConverter {
    /// Validates `params` and plans the transforms.
    pub fn new(params: SpectrogramParams) -> Result<Self> {
        params.validate()?;
        let stft = Stft::new(params.n_fft(), params.hop_length(), params.win_length())?;
        let mel = MelFilterbank::new(
            params.num_stft_bins(),
            params.num_mel_bins as usize,
            params.sample_rate_hz as f64,
            params.min_hz as f64,
            params.max_hz as f64,
        )?;
        Ok(SpectrogramConverter { params, stft, mel })
    }

    /// The parameters.
    pub fn params(&self) -> &SpectrogramParams {
        &self.params
    }

    /// The planned STFT.
    pub fn stft(&self) -> &Stft {
        &self.stft
    }

    /// The mel filterbank.
    pub fn filterbank(&self) -> &MelFilterbank {
        &self.mel
    }

    /// Mel amplitudes of every channel. The audio must already have the
    /// parameters' sample rate and channel count.
    pub fn mel_from_audio(&self, audio: &Audio) -> Result<MelSpectrogram> {
        if audio.sample_rate_hz != self.params.sample_rate_hz {
            return Err(Error::param(
                "sample_rate_hz",
                format!(
                    "audio is at {} Hz, parameters at {} Hz",
                    audio.sample_rate_hz, self.params.sample_rate_hz
                ),
            ));
        }
        if audio.num_channels() != self.params.num_channels() {
            return Err(Error::param(
                "stereo",
                format!(
                    "audio has {} channels, parameters expect {}",
                    audio.num_channels(),
                    self.params.num_channels()
                ),
            ));
        }
        let channels = audio
            .channels
            .iter()
            .map(|c| {
                let scaled: Vec<f32> = c.iter().map(|s| s * INT16_SCALE).collect();
                self.mel_of_channel(&scaled)
            })
            .collect();
        Ok(MelSpectrogram {
            num_mels: self.mel.num_mels(),
            num_frames: self.stft.num_frames(audio.len_samples()),
            channels,
        })
    }

    /// Mel amplitudes `[mel * frames + t]` of one channel. The complex
    /// spectrum is computed [`SEGMENT_FRAMES`] frames at a time, so memory
    /// stays bounded however long the signal is.
    fn mel_of_channel(&self, signal: &[f32]) -> Vec<f32> {
        let bins = self.mel.active_bins();
        let n_mels = self.mel.num_mels();
        let frames = self.stft.num_frames(signal.len());
        let padded = reflect_pad(signal, self.stft.n_fft() / 2);
        let mut by_frame = vec![0.0f32; frames * n_mels];
        let mut block = Spectrum::zeros(0, bins);
        for (b, mel_block) in by_frame.chunks_mut(SEGMENT_FRAMES * n_mels).enumerate() {
            let n = mel_block.len() / n_mels;
            block.frames = n;
            block.data.resize(n * bins, Complex32::new(0.0, 0.0));
            self.stft
                .forward_padded_into(&padded, b * SEGMENT_FRAMES, &mut block);
            mel_block
                .par_chunks_mut(n_mels)
                .zip(block.data.par_chunks(bins))
                .with_min_len(16)
                .for_each_init(
                    || vec![0.0f32; bins],
                    |mag, (mel, frame)| {
                        for (m, c) in mag.iter_mut().zip(frame) {
                            *m = c.norm();
                        }
                        self.mel.apply(mag, mel);
                    },
                );
        }
        transpose(&by_frame, frames, n_mels)
    }

    /// Linear magnitudes `frames x active_bins` (frame-major) estimated from
    /// one channel of mel amplitudes `[mel * frames + t]`.
    pub fn linear_from_mel(&self, mel: &[f32], frames: usize, method: MelInverse) -> Vec<f32> {
        let n_mels = self.mel.num_mels();
        let bins = self.mel.active_bins();
        let by_frame = transpose(mel, n_mels, frames);
        let mut linear = vec![0.0f32; frames * bins];
        linear
            .par_chunks_mut(bins)
            .zip(by_frame.par_chunks(n_mels))
            .for_each(|(lin, m)| match method {
                MelInverse::LeastSquares => self.mel.inverse_least_squares(m, lin),
                MelInverse::Nnls { iterations } => self.mel.inverse_nnls(m, lin, iterations),
            });
        linear
    }

    /// Reconstructs audio from mel amplitudes. Spectrograms longer than
    /// [`SEGMENT_FRAMES`] are inverted segment by segment (see
    /// [`super::segmented`]), so memory stays bounded. `progress` receives
    /// one unit per Griffin-Lim iteration per segment per channel.
    pub fn audio_from_mel(
        &self,
        mel: &MelSpectrogram,
        opts: &InversionOptions,
        progress: &dyn Progress,
    ) -> Result<Audio> {
        if mel.num_mels != self.mel.num_mels() {
            return Err(Error::param(
                "num_mel_bins",
                format!(
                    "spectrogram has {} mel bins, parameters {}",
                    mel.num_mels,
                    self.mel.num_mels()
                ),
            ));
        }
        let frames = mel.num_frames;
        let mut channels = Vec::with_capacity(mel.channels.len());
        let segments = super::segmented::segments(frames, SEGMENT_FRAMES).len();
        progress.start(
            (opts.griffin_lim.iterations * segments * mel.channels.len()) as u64,
            "griffin-lim",
        );
        for (c, m) in mel.channels.iter().enumerate() {
            if let Some(i) = m.iter().position(|v| !v.is_finite()) {
                return Err(Error::param(
                    "mel",
                    format!("channel {c} value {i} is {}", m[i]),
                ));
            }
            let mut gl = opts.griffin_lim;
            gl.seed = gl.seed.wrapping_add(c as u64);
            let to_linear =
                |part: &[f32], n: usize| self.linear_from_mel(part, n, opts.mel_inverse);
            let mel = (m.as_slice(), frames);
            let mut signal =
                reconstruct_channel(&self.stft, &to_linear, mel, &gl, SEGMENT_FRAMES, progress)?;
            for s in signal.iter_mut() {
                *s /= INT16_SCALE;
            }
            channels.push(signal);
        }
        progress.finish();
        normalize_loudness(&mut channels, opts.loudness);
        Audio::new(channels, self.params.sample_rate_hz, "reconstructed audio")
    }

    /// Audio -> spectrogram image: rearranges channels to the parameters'
    /// layout (the sample rate must match), returns the image and the mel
    /// maximum for EXIF.
    pub fn image_from_audio(&self, audio: &Audio) -> Result<(SpectrogramImage, f32)> {
        let layout = if self.params.stereo {
            crate::audio::ChannelLayout::Stereo
        } else {
            crate::audio::ChannelLayout::Mono
        };
        let audio = audio.clone().with_layout(layout);
        let mel = self.mel_from_audio(&audio)?;
        Ok(image_from_mel(&mel, self.params.power_for_image))
    }

    /// Spectrogram image -> audio with this converter's parameters.
    pub fn audio_from_image(
        &self,
        loaded: &LoadedImage,
        opts: &InversionOptions,
        progress: &dyn Progress,
    ) -> Result<Audio> {
        let mel = mel_from_image(
            &loaded.image,
            self.params.power_for_image,
            self.params.stereo,
            loaded.max_value.unwrap_or(DEFAULT_MAX_VALUE),
        );
        self.audio_from_mel(&mel, opts, progress)
    }
}

/// Transposes a row-major `rows x cols` matrix.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = a[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::spectrogram::metrics::spectral_convergence;

    fn tone_audio(secs: f32, rate: u32) -> Audio {
        let n = (secs * rate as f32) as usize;
        let x = (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                0.3 * (std::f32::consts::TAU * 220.0 * t).sin()
                    + 0.2 * (std::f32::consts::TAU * 660.0 * t).sin() * (t * 3.0).sin().abs()
            })
            .collect();
        Audio::new(vec![x], rate, "t").unwrap()
    }

    #[test]
    fn riffusion_width_for_5120_ms() {
        let conv = SpectrogramConverter::new(SpectrogramParams::default()).unwrap();
        let (img, max) = conv.image_from_audio(&tone_audio(5.12, 44100)).unwrap();
        assert_eq!((img.width, img.height), (513, 512));
        assert!(max > 0.0);
    }

    #[test]
    fn round_trip_keeps_the_mel_spectrogram() {
        let params = SpectrogramParams::default();
        let conv = SpectrogramConverter::new(params.clone()).unwrap();
        let audio = tone_audio(1.0, 44100);
        let mel = conv.mel_from_audio(&audio).unwrap();
        let opts = InversionOptions::for_quality(Quality::Fast, &params, 1);
        let back = conv.audio_from_mel(&mel, &opts, &NoProgress).unwrap();
        assert_eq!(back.len_samples(), params.num_samples(mel.num_frames));
        let mel2 = conv.mel_from_audio(&back).unwrap();
        let sc = spectral_convergence(&mel.channels[0], &mel2.channels[0]);
        assert!(sc < 0.2, "mel spectral convergence {sc}");
    }

    #[test]
    fn wrong_rate_or_channels_is_an_error() {
        let conv = SpectrogramConverter::new(SpectrogramParams::default()).unwrap();
        assert!(conv.mel_from_audio(&tone_audio(0.1, 22050)).is_err());
        let a = tone_audio(0.1, 44100);
        let st = Audio::new(
            vec![a.channels[0].clone(), a.channels[0].clone()],
            44100,
            "t",
        )
        .unwrap();
        assert!(conv.mel_from_audio(&st).is_err());
    }
}
