//! The JSON configs of a diffusers checkpoint, read with diffusers' and
//! transformers' defaults for keys an older file lacks.
//!
//! Each config is validated against what the models here implement; an
//! unsupported setting (SDXL's added embeddings, class embeddings, scale-
//! shift time conditioning, ...) is refused with the file and the key named
//! instead of silently computing something else.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A value given either once for every block or per block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same value for every block.
    One(usize),
    /// One value per down block.
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value for block `i` of `n`.
    pub fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v[i.min(v.len() - 1)],
        }
    }

    fn len_ok(&self, n: usize) -> bool {
        match self {
            PerBlock::One(_) => true,
            PerBlock::Each(v) => v.len() == n,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_4() -> usize {
    4
}
fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_one() -> PerBlock {
    PerBlock::One(1)
}
fn default_heads() -> PerBlock {
    PerBlock::One(8)
}
fn default_silu() -> String {
    "silu".into()
}

/// `unet/config.json` of a `UNet2DConditionModel` (the SD 1.x / 2.x family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnetConfig {
    /// Latent channels in.
    #[serde(default = "default_4")]
    pub in_channels: usize,
    /// Latent channels out.
    #[serde(default = "default_4")]
    pub out_channels: usize,
    /// `CrossAttnDownBlock2D` or `DownBlock2D`, top to bottom.
    pub down_block_types: Vec<String>,
    /// `UpBlock2D` or `CrossAttnUpBlock2D`, bottom to top.
    pub up_block_types: Vec<String>,
    /// Channels of each level, top to bottom.
    pub block_out_channels: Vec<usize>,
    /// ResNet blocks per down block (up blocks have one more).
    #[serde(default = "default_2_layers")]
    pub layers_per_block: PerBlock,
    /// Width of the text embeddings attended to.
    pub cross_attention_dim: usize,
    /// Attention heads per level (diffusers' historical name for it).
    #[serde(default = "default_heads")]
    pub attention_head_dim: PerBlock,
    /// Attention heads per level, when set (takes precedence).
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Group-norm epsilon of the ResNet blocks and the output norm.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Cosine half first in the timestep embedding.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    #[serde(default)]
    pub freq_shift: usize,
    /// Linear (SD 2) instead of 1x1-conv (SD 1) projections around the
    /// transformer blocks.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Transformer blocks per attention layer.
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: PerBlock,
    /// Padding of the down-sampling convolutions.
    #[serde(default = "default_one_usize")]
    pub downsample_padding: usize,
    /// Activation of the ResNet blocks.
    #[serde(default = "default_silu")]
    pub act_fn: String,
    /// Mid block type.
    #[serde(default)]
    pub mid_block_type: Option<String>,
    /// Latent side the model was trained at.
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Must be false (no self-attention-free blocks here).
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    /// Must be null (class-conditioned UNets are not supported).
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Must be null (SDXL's added conditioning is not supported).
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Must be "default".
    #[serde(default)]
    pub resnet_time_scale_shift: Option<String>,
    /// Must be "positional".
    #[serde(default)]
    pub time_embedding_type: Option<String>,
    /// Must be false.
    #[serde(default)]
    pub center_input_sample: bool,
    /// Must be false.
    #[serde(default)]
    pub dual_cross_attention: bool,
}

fn default_2_layers() -> PerBlock {
    PerBlock::One(2)
}
fn default_one_usize() -> usize {
    1
}

impl UnetConfig {
    /// The Stable Diffusion 1.5 UNet (riffusion-model-v1): 860 M parameters.
    pub fn sd15() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            down_block_types: vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ],
            up_block_types: vec![
                "UpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
            ],
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::One(2),
            cross_attention_dim: 768,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0,
            use_linear_projection: false,
            transformer_layers_per_block: PerBlock::One(1),
            downsample_padding: 1,
            act_fn: "silu".into(),
            mid_block_type: None,
            sample_size: Some(64),
            only_cross_attention: serde_json::Value::Null,
            class_embed_type: None,
            addition_embed_type: None,
            resnet_time_scale_shift: None,
            time_embedding_type: None,
            center_input_sample: false,
            dual_cross_attention: false,
        }
    }

    /// Attention heads of level `i` (top to bottom).
    pub fn heads(&self, i: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .get(i)
    }

    /// Refuses settings the UNet here does not implement.
    pub fn validate(&self, file: &Path) -> Result<()> {
        let n = self.block_out_channels.len();
        let bad = |key: &str, why: String| Error::invalid_data(file, format!("`{key}`: {why}"));
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(bad(
                "down_block_types",
                format!(
                    "{} down and {} up block types for {} levels of block_out_channels",
                    self.down_block_types.len(),
                    self.up_block_types.len(),
                    n
                ),
            ));
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return Err(bad("down_block_types", format!("unsupported block `{t}`")));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return Err(bad("up_block_types", format!("unsupported block `{t}`")));
            }
        }
        if let Some(m) = &self.mid_block_type {
            if m != "UNetMidBlock2DCrossAttn" {
                return Err(bad("mid_block_type", format!("unsupported block `{m}`")));
            }
        }
        for (key, v) in [
            ("layers_per_block", &self.layers_per_block),
            ("attention_head_dim", &self.attention_head_dim),
            (
                "transformer_layers_per_block",
                &self.transformer_layers_per_block,
            ),
        ] {
            if !v.len_ok(n) {
                return Err(bad(key, format!("needs one value or {n}")));
            }
        }
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c == 0 || c % self.norm_num_groups != 0 {
                return Err(bad(
                    "block_out_channels",
                    format!(
                        "{c} is not a multiple of norm_num_groups {}",
                        self.norm_num_groups
                    ),
                ));
            }
            let h = self.heads(i);
            if h == 0 || c % h != 0 {
                return Err(bad(
                    "attention_head_dim",
                    format!("{h} heads do not divide {c} channels"),
                ));
            }
        }
        if self.act_fn != "silu" {
            return Err(bad(
                "act_fn",
                format!("only silu is supported, not {}", self.act_fn),
            ));
        }
        if self.only_cross_attention.as_bool() == Some(true) || self.only_cross_attention.is_array()
        {
            return Err(bad(
                "only_cross_attention",
                "only false is supported".into(),
            ));
        }
        if let Some(t) = &self.class_embed_type {
            return Err(bad(
                "class_embed_type",
                format!("class embeddings ({t}) are not supported"),
            ));
        }
        if let Some(t) = &self.addition_embed_type {
            return Err(bad(
                "addition_embed_type",
                format!("added conditioning ({t}, e.g. SDXL) is not supported"),
            ));
        }
        if self
            .resnet_time_scale_shift
            .as_deref()
            .is_some_and(|s| s != "default")
        {
            return Err(bad(
                "resnet_time_scale_shift",
                "only \"default\" is supported".into(),
            ));
        }
        if self
            .time_embedding_type
            .as_deref()
            .is_some_and(|s| s != "positional")
        {
            return Err(bad(
                "time_embedding_type",
                "only \"positional\" is supported".into(),
            ));
        }
        if self.center_input_sample || self.dual_cross_attention {
            return Err(bad(
                "center_input_sample",
                "center_input_sample / dual_cross_attention are not supported".into(),
            ));
        }
        Ok(())
    }
}

/// `vae/config.json` of an `AutoencoderKL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    #[serde(default = "default_3")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "default_3")]
    pub out_channels: usize,
    /// Channels of each level, top to bottom.
    pub block_out_channels: Vec<usize>,
    /// ResNet blocks per encoder block (decoder blocks have one more).
    #[serde(default = "default_one_usize")]
    pub layers_per_block: usize,
    /// Latent channels.
    #[serde(default = "default_4")]
    pub latent_channels: usize,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latent scale (0.18215 for SD 1.x).
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// A 1x1 conv after the encoder.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// A 1x1 conv before the decoder.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Attention in the mid blocks.
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
}

fn default_3() -> usize {
    3
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeConfig {
    /// The Stable Diffusion 1.5 VAE.
    pub fn sd15() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }

    /// Pixels per latent cell along each side.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Refuses configs the VAE here cannot build.
    pub fn validate(&self, file: &Path) -> Result<()> {
        if self.block_out_channels.is_empty()
            || self
                .block_out_channels
                .iter()
                .any(|c| *c == 0 || c % self.norm_num_groups != 0)
        {
            return Err(Error::invalid_data(
                file,
                format!(
                    "`block_out_channels` {:?} must be non-empty multiples of norm_num_groups {}",
                    self.block_out_channels, self.norm_num_groups
                ),
            ));
        }
        Ok(())
    }
}

/// `text_encoder/config.json` of a transformers `CLIPTextModel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the embeddings.
    pub hidden_size: usize,
    /// Width of the MLPs.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Context length (77).
    #[serde(default = "default_77")]
    pub max_position_embeddings: usize,
    /// `quick_gelu` (SD 1) or `gelu` (SD 2).
    #[serde(default = "default_quick_gelu")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "default_norm_eps")]
    pub layer_norm_eps: f64,
}

fn default_77() -> usize {
    77
}
fn default_quick_gelu() -> String {
    "quick_gelu".into()
}

impl ClipTextConfig {
    /// CLIP ViT-L/14's text encoder (SD 1.x).
    pub fn sd15() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }

    /// Refuses configs the encoder here cannot build.
    pub fn validate(&self, file: &Path) -> Result<()> {
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::invalid_data(
                file,
                format!(
                    "`num_attention_heads` {} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if !matches!(self.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(Error::invalid_data(
                file,
                format!(
                    "`hidden_act` {} is not supported (quick_gelu, gelu)",
                    self.hidden_act
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
    fn sd15_presets_validate_and_parse_like_the_published_files() {
        let p = Path::new("config.json");
        UnetConfig::sd15().validate(p).unwrap();
        VaeConfig::sd15().validate(p).unwrap();
        ClipTextConfig::sd15().validate(p).unwrap();
        // the keys of runwayml/stable-diffusion-v1-5's unet/config.json (2022)
        let json = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu",
            "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
            "center_input_sample": false, "cross_attention_dim": 768,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
              "CrossAttnDownBlock2D", "DownBlock2D"], "downsample_padding": 1,
            "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
            "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
            "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
              "CrossAttnUpBlock2D"]}"#;
        let c: UnetConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c, UnetConfig::sd15());
    }

    #[test]
    fn unsupported_settings_are_named() {
        let mut c = UnetConfig::sd15();
        c.addition_embed_type = Some("text_time".into());
        let e = c
            .validate(Path::new("unet/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unet/config.json") && e.contains("addition_embed_type"),
            "{e}"
        );
        let mut c = UnetConfig::sd15();
        c.attention_head_dim = PerBlock::Each(vec![5, 10]);
        let e = c.validate(Path::new("u.json")).unwrap_err().to_string();
        assert!(e.contains("attention_head_dim"), "{e}");
    }
}
