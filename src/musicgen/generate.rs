//! Generation with a loaded [`MusicGen`]: the decoding loop over the delay
//! pattern with classifier-free guidance, continuation from codes, windowed
//! extension past the model's context, and codes <-> audio.

use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::decoder::Decoder;
use super::delay::DelayPattern;
use super::model::{Memory, MusicGen};
use super::sampling::Sampling;
use crate::audio::Audio;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Codes per codebook: `codes[k][frame]`.
pub type Codes = Vec<Vec<u32>>;

/// How one generation runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateSettings {
    /// Classifier-free guidance scale; at most 1 runs without the
    /// unconditioned row.
    pub guidance: f64,
    /// Token choice.
    pub sampling: Sampling,
    /// Seed of the token draws.
    pub seed: u64,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        Self {
            guidance: 3.0,
            sampling: Sampling::default(),
            seed: 0,
        }
    }
}

/// Windowed extension: each window holds at most `window_frames`; the next
/// one starts from the last `window_frames - stride_frames` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    /// Frames per window (the model's trained context: 30 s).
    pub window_frames: usize,
    /// New frames per later window (18 s).
    pub stride_frames: usize,
}

impl Windowing {
    /// audiocraft's defaults at `frame_rate`: 30 s windows, 18 s stride.
    pub fn at_frame_rate(frame_rate: usize) -> Self {
        Self {
            window_frames: 30 * frame_rate,
            stride_frames: 18 * frame_rate,
        }
    }
}

/// Runs the decoder for `new_tokens` steps after `prompt` (`[codebook]
/// [frame]`, possibly empty rows) and returns all frames, prompt included:
/// `prompt frames + new_tokens - (codebooks per channel - 1)` per codebook.
pub fn generate_codes(
    decoder: &Decoder,
    memory: &Memory,
    prompt: &[Vec<u32>],
    new_tokens: usize,
    settings: &GenerateSettings,
    progress: &dyn Progress,
) -> Result<Codes> {
    let c = decoder.config();
    settings.sampling.validate()?;
    if prompt.len() != c.num_codebooks || prompt.iter().any(|r| r.len() != prompt[0].len()) {
        return Err(Error::param(
            "prompt",
            format!(
                "expected {} codebook rows of equal length, got {}",
                c.num_codebooks,
                prompt.len()
            ),
        ));
    }
    if let Some(bad) = prompt
        .iter()
        .flatten()
        .find(|&&t| t as usize >= c.vocab_size)
    {
        return Err(Error::param(
            "prompt",
            format!("code {bad} is outside the codebook (size {})", c.vocab_size),
        ));
    }
    if new_tokens < c.codebooks_per_channel() {
        return Err(Error::param(
            "new_tokens",
            format!(
                "{new_tokens} decoder steps give no frame; at least {} are needed",
                c.codebooks_per_channel()
            ),
        ));
    }
    let guided = settings.guidance > 1.0;
    let (hidden, mask) = if guided {
        let zeros = memory.hidden.zeros_like().map_err(terr("musicgen"))?;
        let no_mask = memory.mask.zeros_like().map_err(terr("musicgen"))?;
        (
            Tensor::cat(&[&memory.hidden, &zeros], 0).map_err(terr("musicgen"))?,
            Tensor::cat(&[&memory.mask, &no_mask], 0).map_err(terr("musicgen"))?,
        )
    } else {
        (memory.hidden.clone(), memory.mask.clone())
    };
    let batch = hidden.dim(0).map_err(terr("musicgen"))?;
    let pattern = DelayPattern::new(prompt, new_tokens, c.audio_channels, c.pad_token() as u32);
    let start = pattern.first_free();
    let mut columns: Vec<Vec<u32>> = (0..start).map(|j| pattern.fixed_column(j)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let dev = decoder.device();
    let feed = |cols: &[Vec<u32>]| -> candle_core::Result<Tensor> {
        let (k, t) = (c.num_codebooks, cols.len());
        let mut data = Vec::with_capacity(batch * k * t);
        for _ in 0..batch {
            for kk in 0..k {
                data.extend(cols.iter().map(|col| col[kk]));
            }
        }
        Tensor::from_vec(data, (batch, k, t), dev)
    };
    let mut state = decoder
        .start_for(&hidden, &mask, pattern.len())
        .map_err(terr("musicgen"))?;
    let mut input = feed(&columns).map_err(terr("musicgen"))?;
    progress.start((pattern.len() - start) as u64, "decoding");
    for j in start..pattern.len() {
        let logits = decoder
            .step(&mut state, &input, true)
            .and_then(|l| l.squeeze(2))
            .map_err(terr("musicgen"))?; // [batch, codebooks, vocab]
        let logits = if guided {
            let cond = logits.get(0).map_err(terr("musicgen"))?;
            let uncond = logits.get(1).map_err(terr("musicgen"))?;
            ((cond - &uncond).map_err(terr("musicgen"))? * settings.guidance)
                .and_then(|d| d + uncond)
                .map_err(terr("musicgen"))?
        } else {
            logits.get(0).map_err(terr("musicgen"))?
        };
        let rows: Vec<Vec<f32>> = logits.to_vec2().map_err(terr("musicgen"))?;
        let predicted = rows
            .iter()
            .map(|r| settings.sampling.pick(r, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        let col = pattern.column(j, &predicted);
        input = feed(std::slice::from_ref(&col)).map_err(terr("musicgen"))?;
        columns.push(col);
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    progress.finish();
    Ok(pattern.frames(&columns))
}

/// The result of [`generate_long`].
#[derive(Debug, Clone, PartialEq)]
pub struct LongOutput {
    /// Prompt + new frames, `[codebook][frame]`.
    pub codes: Codes,
    /// Windows run.
    pub windows: usize,
    /// Decoder steps run, over all windows.
    pub decoder_steps: usize,
}

/// Generates `new_frames` frames after `prompt`, window by window when the
/// total exceeds one window. Each window starts from the last
/// `window - stride` frames so far, so a prompt longer than that conditions
/// the decoder through its end only; the output holds the whole prompt.
pub fn generate_long(
    decoder: &Decoder,
    memory: &Memory,
    prompt: &[Vec<u32>],
    new_frames: usize,
    windowing: Windowing,
    settings: &GenerateSettings,
    progress: &dyn Progress,
) -> Result<LongOutput> {
    let w = windowing;
    if w.stride_frames == 0 || w.stride_frames > w.window_frames {
        return Err(Error::param(
            "stride",
            format!(
                "{} frames must be in 1 ..= the window ({} frames)",
                w.stride_frames, w.window_frames
            ),
        ));
    }
    if new_frames == 0 {
        return Err(Error::param("new_frames", "nothing to generate"));
    }
    let delay = decoder.config().codebooks_per_channel() - 1;
    // every window, the first included, is conditioned on at most the last
    // `keep` frames so far (the prompt's or generated ones)
    let keep = w.window_frames - w.stride_frames;
    let mut all: Codes = prompt.to_vec();
    let target = all.first().map_or(0, Vec::len) + new_frames;
    let (mut steps, mut window) = (0, 0u64);
    loop {
        let have = all.first().map_or(0, Vec::len);
        if have >= target {
            break;
        }
        let context: Codes = all
            .iter()
            .map(|r| r[have - keep.min(have)..].to_vec())
            .collect();
        let more = (target - have).min(w.window_frames - context[0].len());
        let s = GenerateSettings {
            seed: settings.seed.wrapping_add(window),
            ..*settings
        };
        if window > 0 {
            progress.message(&format!("window {}: {more} more frames", window + 1));
        }
        let out = generate_codes(decoder, memory, &context, more + delay, &s, progress)?;
        steps += more + delay;
        for (row, new) in all.iter_mut().zip(out) {
            row.extend_from_slice(&new[new.len() - more..]);
        }
        window += 1;
    }
    Ok(LongOutput {
        codes: all,
        windows: window as usize,
        decoder_steps: steps,
    })
}

/// Decodes codes to audio: one codec pass per channel (stereo models
/// interleave left / right codebooks).
pub fn codes_to_audio(model: &MusicGen, codes: &[Vec<u32>]) -> Result<Audio> {
    let ch = model.channels();
    let frames = codes.first().map_or(0, Vec::len);
    if frames == 0 {
        return Err(Error::param("codes", "no frame to decode"));
    }
    let mut channels = Vec::with_capacity(ch);
    for c in 0..ch {
        let rows: Vec<u32> = codes
            .iter()
            .skip(c)
            .step_by(ch)
            .flat_map(|r| r.iter().copied())
            .collect();
        let q = rows.len() / frames;
        let t = Tensor::from_vec(rows, (1, q, frames), model.codec.device())
            .map_err(terr("musicgen"))?;
        let audio = model
            .codec
            .decode(&t)
            .and_then(|a| a.flatten_all())
            .and_then(|a| a.to_vec1::<f32>())
            .map_err(terr("musicgen"))?;
        channels.push(audio);
    }
    Audio::new(channels, model.sample_rate_hz(), "musicgen output")
}

/// Encodes audio (at the model's rate; one channel per model channel) into
/// prompt codes, interleaving left / right for stereo models.
pub fn audio_to_codes(model: &MusicGen, audio: &Audio) -> Result<Codes> {
    let ch = model.channels();
    if audio.sample_rate_hz != model.sample_rate_hz() || audio.num_channels() != ch {
        return Err(Error::param(
            "audio",
            format!(
                "expected {ch} channel(s) at {} Hz, got {} at {} Hz",
                model.sample_rate_hz(),
                audio.num_channels(),
                audio.sample_rate_hz
            ),
        ));
    }
    let per_channel = model.config.decoder.codebooks_per_channel();
    let mut out: Codes = vec![Vec::new(); per_channel * ch];
    for (c, samples) in audio.channels.iter().enumerate() {
        let x = Tensor::from_slice(samples, (1, 1, samples.len()), model.codec.device())
            .map_err(terr("musicgen"))?;
        let codes = model
            .codec
            .encode(&x)
            .and_then(|t| t.squeeze(0))
            .and_then(|t| t.to_dtype(DType::U32))
            .and_then(|t| t.to_vec2::<u32>())
            .map_err(terr("musicgen"))?;
        if codes.len() < per_channel {
            return Err(Error::param(
                "audio",
                format!(
                    "the codec gives {} codebooks, the decoder needs {per_channel}",
                    codes.len()
                ),
            ));
        }
        for (k, row) in codes.into_iter().take(per_channel).enumerate() {
            out[k * ch + c] = row;
        }
    }
    Ok(out)
}
