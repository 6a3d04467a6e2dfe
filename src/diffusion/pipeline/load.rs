//! Loading a Stable Diffusion checkpoint in the diffusers folder layout:
//! `model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
//! `scheduler/`. Weights may be safetensors or PyTorch `.bin`, fp32, fp16 or
//! bf16 (with diffusers' `.fp16` variant names); every tensor is checked by
//! name and shape and every tensor of a file must be used.

use crate::fsutil::read_json;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::diffusion::clip::ClipTextModel;
use crate::diffusion::config::{ClipTextConfig, UnetConfig, VaeConfig};
use crate::diffusion::defaults::{ModelDefaults, DEFAULTS_FILE};
use crate::diffusion::schedulers::SchedulerConfig;
use crate::diffusion::tokenizer::ClipTokenizer;
use crate::diffusion::unet::Unet;
use crate::diffusion::vae::Vae;
use crate::error::{Error, Result};
use crate::nn::weights::{tensor_err, WeightStore};
use crate::spectrogram::SpectrogramParams;

/// How to load a checkpoint.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype of the UNet and text encoder (f32, f16, bf16).
    pub dtype: DType,
    /// Dtype of the VAE (f32 unless memory is tight: SD's VAE overflows in
    /// f16 on some inputs).
    pub vae_dtype: DType,
    /// Where the models live.
    pub device: Device,
    /// A weights variant to prefer, e.g. `fp16` for
    /// `diffusion_pytorch_model.fp16.safetensors`.
    pub variant: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            vae_dtype: DType::F32,
            device: Device::Cpu,
            variant: None,
        }
    }
}

/// Image columns for `ms` milliseconds at `params`' hop.
pub fn px_of_ms(params: &SpectrogramParams, ms: f64) -> usize {
    (ms / params.step_ms as f64).round() as usize
}

/// The file in a pipeline folder that records the spectrogram parameters
/// of the images the model was trained on (read by `generate`).
pub const SPECTROGRAM_FILE: &str = "spectrogram.json";

/// A loaded Stable Diffusion pipeline's models.
#[derive(Debug)]
pub struct StableDiffusion {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The CLIP tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The CLIP text encoder.
    pub text_encoder: ClipTextModel,
    /// The denoising UNet.
    pub unet: Unet,
    /// The autoencoder.
    pub vae: Vae,
    /// The training noise schedule and sampler defaults.
    pub scheduler: SchedulerConfig,
    /// The weight files read, for hashing and reports.
    pub weight_files: Vec<PathBuf>,
    /// The folder's own usage settings (`ragafusion.json`), if any.
    pub defaults: ModelDefaults,
}

fn require(file: &Path, what: &str) -> Result<()> {
    if file.is_file() {
        Ok(())
    } else {
        Err(Error::checkpoint(file, format!("missing ({what})")))
    }
}

/// The weights file of a component folder: safetensors before `.bin`. A
/// requested variant must be there (no silent fall-back to other weights);
/// without one, the plain name comes first and a variant is a last resort.
pub fn find_weights(dir: &Path, stems: &[&str], variant: Option<&str>) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    let mut push_all = |v: Option<&str>| {
        for ext in ["safetensors", "bin"] {
            for stem in stems {
                let name = match v {
                    Some(v) => format!("{stem}.{v}.{ext}"),
                    None => format!("{stem}.{ext}"),
                };
                candidates.push(dir.join(name));
            }
        }
    };
    match variant {
        Some(v) => push_all(Some(v)),
        None => {
            push_all(None);
            for v in ["fp16", "bf16"] {
                push_all(Some(v));
            }
        }
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    if let Some(v) = variant {
        let names: Vec<String> = candidates
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        return Err(Error::checkpoint(
            dir,
            format!(
                "no `{v}` variant weights (looked for {}); leave out --variant to load the plain weights",
                names.join(", ")
            ),
        ));
    }
    let names: Vec<String> = candidates
        .iter()
        .take(2 * stems.len())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Err(Error::checkpoint(
        dir,
        format!(
            "no weights file (looked for {} and variants)",
            names.join(", ")
        ),
    ))
}

/// Loads one component folder: its `config.json` and its weights, then checks that every
/// tensor of the file was used.
fn component<C, M>(
    dir: &Path,
    name: &str,
    stems: &[&str],
    options: &LoadOptions,
    dtype: DType,
    validate: impl Fn(&C, &Path) -> Result<()>,
    build: impl Fn(&candle_nn::VarBuilder, &C) -> candle_core::Result<M>,
) -> Result<(M, PathBuf)>
where
    C: for<'de> serde::Deserialize<'de>,
{
    let sub = dir.join(name);
    let config_file = sub.join("config.json");
    require(&config_file, &format!("the {name} config"))?;
    let config: C = read_json(&config_file)?;
    validate(&config, &config_file)?;
    let weights = find_weights(&sub, stems, options.variant.as_deref())?;
    let store = WeightStore::open(&weights, &options.device)?;
    let model =
        build(&store.var_builder(dtype, &options.device), &config).map_err(tensor_err(&weights))?;
    store.check_all_used()?;
    Ok((model, weights))
}

impl StableDiffusion {
    /// The spectrogram parameters the model was trained for: its
    /// [`SPECTROGRAM_FILE`] (written by `train` / `train-vae`) or
    /// riffusion's defaults when it has none.
    pub fn spectrogram_params(&self) -> Result<SpectrogramParams> {
        let file = self.dir.join(SPECTROGRAM_FILE);
        if !file.is_file() {
            return Ok(SpectrogramParams::default());
        }
        let params: SpectrogramParams = read_json(&file)?;
        params
            .validate()
            .map_err(|e| Error::invalid_data(&file, e.to_string()))?;
        Ok(params)
    }

    /// Columns of one 5.12 s clip (riffusion's 512 at its 10 ms hop) for
    /// `params`, rounded up to a multiple of the VAE scale.
    pub fn clip_px(&self, params: &SpectrogramParams) -> usize {
        let scale = self.vae_scale();
        px_of_ms(params, 5120.0).div_ceil(scale) * scale
    }

    /// Image height for `params` (its mel bins), refused when the VAE
    /// cannot encode it.
    pub fn height_px(&self, params: &SpectrogramParams) -> Result<usize> {
        let h = params.num_mel_bins as usize;
        if h % self.vae_scale() != 0 {
            return Err(Error::param(
                "num_mel_bins",
                format!(
                    "the spectrogram height ({h} mel bins) is not a multiple of the VAE scale {}",
                    self.vae_scale()
                ),
            ));
        }
        Ok(h)
    }

    /// Loads the checkpoint in `dir`.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let index = dir.join("model_index.json");
        if !dir.is_dir() {
            return Err(Error::checkpoint(
                dir,
                "not a folder (expected a diffusers checkpoint folder with model_index.json)",
            ));
        }
        require(
            &index,
            "a diffusers checkpoint folder starts with model_index.json",
        )?;
        let _: serde_json::Value = read_json(&index)?;

        let defaults = ModelDefaults::read(dir)?;
        let scheduler_file = dir.join("scheduler").join("scheduler_config.json");
        require(&scheduler_file, "the scheduler config")?;
        let scheduler: SchedulerConfig = read_json(&scheduler_file)?;
        scheduler.validate(&scheduler_file)?;

        let tok_dir = dir.join("tokenizer");
        if !tok_dir.is_dir() {
            return Err(Error::checkpoint(
                &tok_dir,
                "missing (the tokenizer folder)",
            ));
        }
        let tokenizer = ClipTokenizer::load(&tok_dir)?;

        let (text_encoder, te_file) = component(
            dir,
            "text_encoder",
            &["model", "pytorch_model"],
            options,
            options.dtype,
            ClipTextConfig::validate,
            |vb, c: &ClipTextConfig| ClipTextModel::new(vb, c),
        )?;
        let (unet, unet_file) = component(
            dir,
            "unet",
            &["diffusion_pytorch_model"],
            options,
            options.dtype,
            UnetConfig::validate,
            |vb, c: &UnetConfig| Unet::new(vb, c),
        )?;
        let (vae, vae_file) = component(
            dir,
            "vae",
            &["diffusion_pytorch_model"],
            options,
            options.vae_dtype,
            VaeConfig::validate,
            |vb, c: &VaeConfig| Vae::new(vb, c),
        )?;
        if text_encoder.config().hidden_size != unet.config().cross_attention_dim {
            return Err(Error::checkpoint(
                dir.join("unet").join("config.json"),
                format!(
                    "`cross_attention_dim` {} differs from the text encoder's hidden_size {}",
                    unet.config().cross_attention_dim,
                    text_encoder.config().hidden_size
                ),
            ));
        }
        if vae.config().latent_channels != unet.config().in_channels {
            return Err(Error::checkpoint(
                dir.join("unet").join("config.json"),
                format!(
                    "`in_channels` {} differs from the VAE's latent_channels {}",
                    unet.config().in_channels,
                    vae.config().latent_channels
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler,
            weight_files: vec![te_file, unet_file, vae_file],
            defaults,
        })
    }

    /// The weights file loaded for `component` (`unet`, `vae`,
    /// `text_encoder`).
    pub fn component_weights(&self, component: &str) -> Result<&Path> {
        self.weight_files
            .iter()
            .find(|f| {
                f.parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n == component)
            })
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                Error::checkpoint(
                    self.dir.join(component),
                    format!("no {component} weights file was loaded"),
                )
            })
    }

    /// A 64-bit content hash (xxh3) of the configs and weight files, hex.
    pub fn content_hash(&self) -> Result<String> {
        let mut files: Vec<PathBuf> = vec![
            self.dir.join("model_index.json"),
            self.dir.join("scheduler").join("scheduler_config.json"),
            self.dir.join("unet").join("config.json"),
            self.dir.join("vae").join("config.json"),
            self.dir.join("text_encoder").join("config.json"),
        ];
        files.extend(self.weight_files.iter().cloned());
        let defaults = self.dir.join(DEFAULTS_FILE);
        if defaults.is_file() {
            files.push(defaults);
        }
        crate::fsutil::content_hash(&files)
    }
}
