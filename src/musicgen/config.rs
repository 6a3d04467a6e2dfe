//! `config.json` of a transformers `MusicgenForConditionalGeneration`: the
//! T5 text encoder, the EnCodec audio codec and the MusicGen decoder, each
//! a sub-config, read with transformers' defaults for keys a file lacks.
//!
//! Every size comes from the file; [`DecoderConfig::preset`] holds the three
//! published decoder sizes for benchmarks and shape checks.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole checkpoint's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MusicgenConfig {
    /// `musicgen` (melody checkpoints say `musicgen_melody` and are a
    /// different architecture).
    #[serde(default)]
    pub model_type: Option<String>,
    /// The T5 encoder of the text prompt.
    pub text_encoder: T5Config,
    /// The EnCodec model that turns codes into audio (and audio into codes).
    pub audio_encoder: EncodecConfig,
    /// The autoregressive decoder over the codebooks.
    pub decoder: DecoderConfig,
}

/// transformers' `T5Config`, encoder side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T5Config {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward layer.
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative-position buckets.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance from which all relative positions share a bucket.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// `relu` (T5) or `gated-gelu` (T5 v1.1, Flan-T5).
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
    /// RMS-norm epsilon.
    #[serde(default = "default_t5_eps")]
    pub layer_norm_epsilon: f64,
}

impl T5Config {
    /// T5-base's encoder, MusicGen's text encoder.
    pub fn base() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 768,
            d_kv: 64,
            d_ff: 3072,
            num_layers: 12,
            num_heads: 12,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            feed_forward_proj: "relu".into(),
            layer_norm_epsilon: 1e-6,
        }
    }
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_ff_proj() -> String {
    "relu".into()
}
fn default_t5_eps() -> f64 {
    1e-6
}

/// transformers' `EncodecConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodecConfig {
    /// Audio sample rate in Hz (32000 for MusicGen).
    pub sampling_rate: u32,
    /// Channels the codec itself reads and writes (1: stereo MusicGen runs
    /// it once per channel).
    #[serde(default = "default_one")]
    pub audio_channels: usize,
    /// Channels of the first convolution.
    pub num_filters: usize,
    /// Width of the latent frames.
    pub hidden_size: usize,
    /// Codes per codebook.
    pub codebook_size: usize,
    /// Width of a codebook vector (default: `hidden_size`).
    #[serde(default)]
    pub codebook_dim: Option<usize>,
    /// Upsampling ratios of the decoder (the encoder downsamples in reverse).
    pub upsampling_ratios: Vec<usize>,
    /// Bandwidths in kbps; the last one sets the number of quantizers.
    pub target_bandwidths: Vec<f64>,
    /// LSTM layers after the encoder's and before the decoder's convolutions.
    #[serde(default = "default_two")]
    pub num_lstm_layers: usize,
    /// Residual blocks per resolution.
    #[serde(default = "default_one")]
    pub num_residual_layers: usize,
    /// Channel reduction inside residual blocks.
    #[serde(default = "default_two")]
    pub compress: usize,
    /// Kernel of the first convolution.
    #[serde(default = "default_seven")]
    pub kernel_size: usize,
    /// Kernel of the last convolution.
    #[serde(default = "default_seven")]
    pub last_kernel_size: usize,
    /// Kernel of the residual blocks' first convolution.
    #[serde(default = "default_three")]
    pub residual_kernel_size: usize,
    /// Dilation growth per residual block.
    #[serde(default = "default_two")]
    pub dilation_growth_rate: usize,
    /// `weight_norm` or `time_group_norm`.
    #[serde(default = "default_weight_norm")]
    pub norm_type: String,
    /// Padding mode of the convolutions: `reflect` or `constant`.
    #[serde(default = "default_reflect")]
    pub pad_mode: String,
    /// Causal (left-padded) convolutions.
    #[serde(default)]
    pub use_causal_conv: bool,
    /// A 1x1 convolution on the residual blocks' skip path.
    #[serde(default = "default_true")]
    pub use_conv_shortcut: bool,
    /// Loudness normalisation of the input (scales travel with the codes).
    #[serde(default)]
    pub normalize: bool,
    /// Chunked encoding (the 48 kHz model); MusicGen's codec has none.
    #[serde(default)]
    pub chunk_length_s: Option<f64>,
    /// Share of the padding trimmed on the right of causal transposed
    /// convolutions.
    #[serde(default = "default_ratio_one")]
    pub trim_right_ratio: f64,
}

fn default_one() -> usize {
    1
}
fn default_two() -> usize {
    2
}
fn default_three() -> usize {
    3
}
fn default_seven() -> usize {
    7
}
fn default_weight_norm() -> String {
    "weight_norm".into()
}
fn default_reflect() -> String {
    "reflect".into()
}
fn default_true() -> bool {
    true
}
fn default_ratio_one() -> f64 {
    1.0
}

impl EncodecConfig {
    /// MusicGen's 32 kHz codec: 4 codebooks of 2048 at 50 Hz.
    pub fn musicgen_32khz() -> Self {
        Self {
            sampling_rate: 32000,
            audio_channels: 1,
            num_filters: 64,
            hidden_size: 128,
            codebook_size: 2048,
            codebook_dim: None,
            upsampling_ratios: vec![8, 5, 4, 4],
            target_bandwidths: vec![2.2],
            num_lstm_layers: 2,
            num_residual_layers: 1,
            compress: 2,
            kernel_size: 7,
            last_kernel_size: 7,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            norm_type: "weight_norm".into(),
            pad_mode: "reflect".into(),
            use_causal_conv: false,
            use_conv_shortcut: false,
            normalize: false,
            chunk_length_s: None,
            trim_right_ratio: 1.0,
        }
    }

    /// Samples per code frame (the product of the upsampling ratios).
    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    /// Code frames per second, rounded up as transformers does.
    pub fn frame_rate(&self) -> usize {
        (self.sampling_rate as usize).div_ceil(self.hop_length().max(1))
    }

    /// Width of a codebook vector.
    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }

    /// Quantizers at the highest bandwidth (4 for MusicGen's 2.2 kbps).
    pub fn num_quantizers(&self) -> usize {
        let bits = (self.codebook_size as f64).log2().ceil();
        let top = self.target_bandwidths.last().copied().unwrap_or(0.0);
        (1000.0 * top / (self.frame_rate() as f64 * bits)).floor() as usize
    }

    fn validate(&self, file: &Path) -> Result<()> {
        let field = |name: &str, why: String| {
            Error::invalid_data(file, format!("audio_encoder.{name}: {why}"))
        };
        if self.norm_type != "weight_norm" && self.norm_type != "time_group_norm" {
            return Err(field(
                "norm_type",
                format!(
                    "{} (expected weight_norm or time_group_norm)",
                    self.norm_type
                ),
            ));
        }
        if self.pad_mode != "reflect" && self.pad_mode != "constant" {
            return Err(field(
                "pad_mode",
                format!("{} (expected reflect or constant)", self.pad_mode),
            ));
        }
        if self.chunk_length_s.is_some() {
            return Err(field(
                "chunk_length_s",
                "chunked codecs are not used by MusicGen; expected null".into(),
            ));
        }
        if self.normalize {
            return Err(field(
                "normalize",
                "loudness-normalised codecs are not used by MusicGen; expected false".into(),
            ));
        }
        if self.audio_channels != 1 {
            return Err(field(
                "audio_channels",
                format!("{} (MusicGen's codec is mono)", self.audio_channels),
            ));
        }
        if self.upsampling_ratios.is_empty() || self.upsampling_ratios.contains(&0) {
            return Err(field("upsampling_ratios", "must be positive".into()));
        }
        if !self.codebook_size.is_power_of_two() {
            return Err(field(
                "codebook_size",
                format!("{} is not a power of two", self.codebook_size),
            ));
        }
        if self.compress == 0 || self.num_filters == 0 || self.hidden_size == 0 {
            return Err(field(
                "num_filters",
                "num_filters, hidden_size and compress must be positive".into(),
            ));
        }
        if self.num_quantizers() == 0 {
            return Err(field(
                "target_bandwidths",
                "gives no quantizer at the highest bandwidth".into(),
            ));
        }
        Ok(())
    }
}

/// transformers' `MusicgenDecoderConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Codes per codebook (2048); the embedding tables have one more row,
    /// the pad / start token.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub ffn_dim: usize,
    /// Codebooks (4 mono, 8 stereo, interleaved left / right).
    pub num_codebooks: usize,
    /// 1 mono, 2 stereo.
    #[serde(default = "default_one")]
    pub audio_channels: usize,
    /// Activation of the feed-forward layer (`gelu`: exact erf GELU).
    #[serde(default = "default_gelu")]
    pub activation_function: String,
    /// Multiplies the token embeddings by sqrt(hidden_size).
    #[serde(default)]
    pub scale_embedding: bool,
    /// The pad / start token (= vocab_size).
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    /// Position table size of the published models; positions are computed,
    /// so longer sequences work too.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Width of the cross-attention memory, when the text encoder's output
    /// is not projected (default: `hidden_size`).
    #[serde(default)]
    pub cross_attention_hidden_size: Option<usize>,
}

fn default_gelu() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    2048
}

impl DecoderConfig {
    /// The published decoder sizes: `small`, `medium`, `large` (mono).
    pub fn preset(name: &str) -> Result<Self> {
        let (hidden_size, num_hidden_layers, num_attention_heads, ffn_dim) = match name {
            "small" => (1024, 24, 16, 4096),
            "medium" => (1536, 48, 24, 6144),
            "large" => (2048, 48, 32, 8192),
            other => {
                return Err(Error::param(
                    "size",
                    format!("unknown MusicGen size {other} (small, medium, large)"),
                ))
            }
        };
        Ok(Self {
            vocab_size: 2048,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            ffn_dim,
            num_codebooks: 4,
            audio_channels: 1,
            activation_function: "gelu".into(),
            scale_embedding: false,
            pad_token_id: Some(2048),
            max_position_embeddings: 2048,
            cross_attention_hidden_size: None,
        })
    }

    /// The pad / start token id.
    pub fn pad_token(&self) -> usize {
        self.pad_token_id.unwrap_or(self.vocab_size)
    }

    /// Codebooks per audio channel.
    pub fn codebooks_per_channel(&self) -> usize {
        self.num_codebooks / self.audio_channels.max(1)
    }

    fn validate(&self, file: &Path) -> Result<()> {
        let field =
            |name: &str, why: String| Error::invalid_data(file, format!("decoder.{name}: {why}"));
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(field(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if !matches!(self.audio_channels, 1 | 2) || self.num_codebooks % self.audio_channels != 0 {
            return Err(field(
                "audio_channels",
                format!(
                    "{} with {} codebooks (expected 1, or 2 with an even count)",
                    self.audio_channels, self.num_codebooks
                ),
            ));
        }
        if self.num_codebooks == 0 {
            return Err(field("num_codebooks", "must be positive".into()));
        }
        if self.activation_function != "gelu" {
            return Err(field(
                "activation_function",
                format!("{} is not supported (gelu)", self.activation_function),
            ));
        }
        if self.pad_token() != self.vocab_size {
            return Err(field(
                "pad_token_id",
                format!(
                    "{} (the embedding tables' extra row is vocab_size {})",
                    self.pad_token(),
                    self.vocab_size
                ),
            ));
        }
        Ok(())
    }
}

impl MusicgenConfig {
    /// Reads and validates `config.json`.
    pub fn read(file: &Path) -> Result<Self> {
        let config: Self = crate::fsutil::read_json(file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Width of the memory the decoder cross-attends to.
    pub fn memory_width(&self) -> usize {
        self.decoder
            .cross_attention_hidden_size
            .unwrap_or(self.decoder.hidden_size)
    }

    /// Whether the text encoder's output goes through `enc_to_dec_proj`.
    pub fn has_projection(&self) -> bool {
        self.text_encoder.d_model != self.decoder.hidden_size
            && self.decoder.cross_attention_hidden_size.is_none()
    }

    /// Refuses configs the models here cannot build, naming the key.
    pub fn validate(&self, file: &Path) -> Result<()> {
        if let Some(kind) = self.model_type.as_deref().filter(|k| *k != "musicgen") {
            return Err(Error::invalid_data(
                file,
                format!(
                    "model_type: {kind} is not supported (musicgen; melody-conditioned \
                     checkpoints are a different architecture)"
                ),
            ));
        }
        self.decoder.validate(file)?;
        self.audio_encoder.validate(file)?;
        let t = &self.text_encoder;
        if t.num_heads == 0 || t.d_kv == 0 || t.d_model == 0 {
            return Err(Error::invalid_data(
                file,
                "text_encoder: d_model, d_kv and num_heads must be positive",
            ));
        }
        if !matches!(t.feed_forward_proj.as_str(), "relu" | "gated-gelu") {
            return Err(Error::invalid_data(
                file,
                format!(
                    "text_encoder.feed_forward_proj: {} is not supported (relu, gated-gelu)",
                    t.feed_forward_proj
                ),
            ));
        }
        let per_channel = self.decoder.codebooks_per_channel();
        let quantizers = self.audio_encoder.num_quantizers();
        if per_channel > quantizers {
            return Err(Error::invalid_data(
                file,
                format!(
                    "decoder.num_codebooks: {} per channel, but the codec has {quantizers} quantizers",
                    per_channel
                ),
            ));
        }
        if self.decoder.vocab_size != self.audio_encoder.codebook_size {
            return Err(Error::invalid_data(
                file,
                format!(
                    "decoder.vocab_size {} differs from audio_encoder.codebook_size {}",
                    self.decoder.vocab_size, self.audio_encoder.codebook_size
                ),
            ));
        }
        if !self.has_projection() && self.memory_width() != t.d_model {
            return Err(Error::invalid_data(
                file,
                format!(
                    "decoder.cross_attention_hidden_size {} differs from text_encoder.d_model {}",
                    self.memory_width(),
                    t.d_model
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn musicgen_codec_geometry() {
        // facebook/musicgen-small's audio_encoder (the keys it sets)
        let json = r#"{"sampling_rate": 32000, "num_filters": 64, "hidden_size": 128,
            "codebook_size": 2048, "upsampling_ratios": [8, 5, 4, 4],
            "target_bandwidths": [2.2], "use_conv_shortcut": false,
            "chunk_length_s": null, "normalize": false}"#;
        let c: EncodecConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c, EncodecConfig::musicgen_32khz());
        assert_eq!(c.hop_length(), 640);
        assert_eq!(c.frame_rate(), 50);
        assert_eq!(c.num_quantizers(), 4);
        assert_eq!(c.codebook_dim(), 128);
        c.validate(Path::new("config.json")).unwrap();
    }

    #[test]
    fn presets_have_the_published_sizes() {
        let s = DecoderConfig::preset("small").unwrap();
        assert_eq!(
            (s.hidden_size, s.num_hidden_layers, s.num_attention_heads),
            (1024, 24, 16)
        );
        let m = DecoderConfig::preset("medium").unwrap();
        assert_eq!(
            (m.hidden_size, m.num_hidden_layers, m.ffn_dim),
            (1536, 48, 6144)
        );
        let l = DecoderConfig::preset("large").unwrap();
        assert_eq!((l.hidden_size, l.num_attention_heads), (2048, 32));
        for c in [s, m, l] {
            c.validate(Path::new("c.json")).unwrap();
        }
        assert!(DecoderConfig::preset("huge").is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let mut d = DecoderConfig::preset("small").unwrap();
        d.num_attention_heads = 7;
        let e = d
            .validate(Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/config.json") && e.contains("decoder.num_attention_heads"),
            "{e}"
        );
        d.num_attention_heads = 16;
        d.audio_channels = 2;
        d.num_codebooks = 5;
        let e = d.validate(Path::new("c.json")).unwrap_err().to_string();
        assert!(e.contains("decoder.audio_channels"), "{e}");
    }
}
