//! Opus through symphonia. Symphonia 0.5 demuxes Opus from Ogg (`.opus`,
//! `.ogg`) and Matroska / WebM, but has no Opus decoder; this one wraps
//! the `opus-decoder` crate and registers it beside symphonia's own codecs
//! ([`codecs`]).
//!
//! Why `opus-decoder`: it decodes only (no encoder to carry), is pure Rust
//! with `#![forbid(unsafe_code)]` and no C or FFI, and its own test suite
//! passes all 12 RFC 8251 conformance vectors against `opus_compare`.
//! `mousiki`, the other pure-Rust choice, carries a whole codec (encoder,
//! deep packet-loss concealment) for the same decoding.
//!
//! Mono and stereo streams (what encoders write for music) are decoded at
//! 48 kHz, with the encoder's pre-skip (from the OpusHead) dropped from the
//! start.

use std::sync::OnceLock;

use symphonia::core::audio::{AsAudioBufferRef, AudioBuffer, AudioBufferRef, Signal, SignalSpec};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, CodecRegistry, Decoder, DecoderOptions, FinalizeResult,
    CODEC_TYPE_OPUS,
};
use symphonia::core::errors::{Error as SymError, Result as SymResult};
use symphonia::core::formats::Packet;

/// Opus always decodes at 48 kHz.
const OPUS_RATE_HZ: u32 = 48_000;
/// Longest Opus packet: 120 ms at 48 kHz, per channel.
const MAX_PACKET_FRAMES: usize = 5760;

/// Symphonia's enabled codecs and the Opus decoder.
pub(crate) fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<OpusDecoder>();
        registry
    })
}

/// The encoder's pre-skip in frames, from the OpusHead that Ogg and
/// Matroska carry as the codec's extra data (0 when absent). Symphonia's
/// own `delay` for Ogg Opus is not the pre-skip.
fn pre_skip(params: &CodecParameters) -> usize {
    params
        .extra_data
        .as_deref()
        .filter(|head| head.len() >= 12 && head.starts_with(b"OpusHead"))
        .map_or(0, |head| u16::from_le_bytes([head[10], head[11]]) as usize)
}

/// A symphonia decoder for Opus packets.
pub(crate) struct OpusDecoder {
    params: CodecParameters,
    inner: opus_decoder::OpusDecoder,
    channels: usize,
    /// Frames of the pre-skip still to drop.
    skip: usize,
    /// The last packet's samples, planar.
    buf: AudioBuffer<f32>,
    /// The last packet's samples, interleaved as decoded.
    interleaved: Vec<f32>,
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _opts: &DecoderOptions) -> SymResult<Self> {
        let layout = params
            .channels
            .ok_or(SymError::Unsupported("Opus stream without a channel count"))?;
        let channels = layout.count();
        if !(1..=2).contains(&channels) {
            return Err(SymError::Unsupported(
                "Opus with more than two channels (only mono and stereo are decoded)",
            ));
        }
        let inner = opus_decoder::OpusDecoder::new(OPUS_RATE_HZ, channels)
            .map_err(|_| SymError::Unsupported("Opus decoder setup"))?;
        Ok(OpusDecoder {
            params: params.clone(),
            inner,
            channels,
            skip: pre_skip(params),
            buf: AudioBuffer::new(
                MAX_PACKET_FRAMES as u64,
                SignalSpec::new(OPUS_RATE_HZ, layout),
            ),
            interleaved: vec![0.0; MAX_PACKET_FRAMES * channels],
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[symphonia::core::support_codec!(
            CODEC_TYPE_OPUS,
            "opus",
            "Opus"
        )]
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> SymResult<AudioBufferRef<'_>> {
        self.buf.clear();
        let frames = self
            .inner
            .decode_float(&packet.data, &mut self.interleaved, false)
            .map_err(|_| SymError::DecodeError("corrupt Opus packet"))?;
        let dropped = self.skip.min(frames);
        self.skip -= dropped;
        self.buf.render_reserved(Some(frames - dropped));
        for ch in 0..self.channels {
            let plane = self.buf.chan_mut(ch);
            for (i, v) in plane.iter_mut().enumerate() {
                *v = self.interleaved[(dropped + i) * self.channels + ch];
            }
        }
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}
