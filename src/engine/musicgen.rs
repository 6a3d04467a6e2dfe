//! The MusicGen loop: text (or nothing, or a recording to continue) to
//! codec tokens, window by window past the model's context, then audio.

use std::time::Instant;

use serde_json::json;

use super::outputs::{slug, Generated};
use super::request::GenerateRequest;
use super::{defaults, Engine};
use crate::audio::{read_audio_as, ChannelLayout};
use crate::error::Result;
use crate::musicgen::{
    audio_to_codes, codes_to_audio, generate_long, Codes, GenerateSettings, MusicGen, Sampling,
    Windowing,
};
use crate::progress::Progress;

/// Frames for `seconds` at `frame_rate` (at least one).
fn frames_of(seconds: f64, frame_rate: usize) -> usize {
    ((seconds * frame_rate as f64).round() as usize).max(1)
}

/// The guidance of a request: 1 (none) for an empty prompt, which
/// generates unconditionally.
fn guidance(r: &GenerateRequest) -> f64 {
    if r.prompt.trim().is_empty() {
        1.0
    } else {
        r.guidance.unwrap_or(defaults::MUSICGEN_GUIDANCE)
    }
}

fn sampling(r: &GenerateRequest) -> Sampling {
    let m = &r.musicgen;
    Sampling {
        greedy: m.greedy,
        temperature: m.temperature,
        top_k: m.top_k,
        top_p: m.top_p,
    }
}

pub(super) fn effective_settings(r: &GenerateRequest) -> serde_json::Value {
    let s = sampling(r);
    json!({
        "guidance": guidance(r),
        "greedy": s.greedy,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "temperature": s.temperature,
    })
}

pub(super) fn generate(
    engine: &Engine,
    model: &MusicGen,
    r: &GenerateRequest,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(Generated) -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let m = &r.musicgen;
    let rate = model.frame_rate();
    let new_frames = frames_of(r.seconds.unwrap_or(defaults::CLIP_SECONDS), rate);
    let windowing = Windowing {
        window_frames: frames_of(m.window_s, rate),
        stride_frames: frames_of(m.stride_s, rate),
    };
    let unconditional = r.prompt.trim().is_empty();
    let settings = GenerateSettings {
        guidance: guidance(r),
        sampling: sampling(r),
        seed: r.seed,
    };

    let t0 = Instant::now();
    let memory = if unconditional {
        model.unconditional_memory(1)?
    } else {
        model.text_memory(&[r.prompt.as_str()])?
    };
    let text_s = t0.elapsed().as_secs_f64();

    let prompt: Codes = match &m.continue_from {
        None => vec![Vec::new(); model.config.decoder.num_codebooks],
        Some(path) => {
            let layout = if model.channels() == 2 {
                ChannelLayout::Stereo
            } else {
                ChannelLayout::Mono
            };
            let audio = read_audio_as(path, model.sample_rate_hz(), layout)?;
            audio_to_codes(model, &audio)?
        }
    };
    let prompt_frames = prompt[0].len();

    let t0 = Instant::now();
    let generated = generate_long(
        &model.decoder,
        &memory,
        &prompt,
        new_frames,
        windowing,
        &settings,
        progress,
    )?;
    let decode_s = t0.elapsed().as_secs_f64();
    let (codes, windows, steps) = (generated.codes, generated.windows, generated.decoder_steps);
    let t0 = Instant::now();
    let audio = codes_to_audio(model, &codes)?;
    let codec_s = t0.elapsed().as_secs_f64();

    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-s{}", slug(&r.prompt), r.seed));
    let sidecar = json!({
        "kind": if m.continue_from.is_some() { "musicgen-continuation" }
                else if unconditional { "musicgen-unconditional" } else { "musicgen" },
        "backend": "musicgen",
        "prompt": r.prompt,
        "seed": r.seed,
        "guidance": settings.guidance,
        "sampling": {"greedy": m.greedy, "top_k": m.top_k, "top_p": m.top_p,
                     "temperature": m.temperature},
        "continue": m.continue_from.as_ref().map(|p| p.display().to_string()),
        "prompt_frames": prompt_frames,
        "new_frames": new_frames,
        "frame_rate_hz": rate,
        "decoder_steps": steps,
        "windows": windows,
        "window_s": m.window_s,
        "stride_s": m.stride_s,
        "sample_rate_hz": audio.sample_rate_hz,
        "channels": audio.num_channels(),
        "model": engine.model_record()?,
        "version": env!("CARGO_PKG_VERSION"),
        "timings_s": {"load": engine.load_s(), "text": text_s, "decode_tokens": decode_s,
                      "codec": codec_s,
                      "total": engine.load_s() + start.elapsed().as_secs_f64()},
        "tokens_per_s": steps as f64 / decode_s.max(1e-9),
    });
    emit(Generated {
        name,
        audio,
        image: None,
        sidecar,
        inputs: Vec::new(),
    })
}
