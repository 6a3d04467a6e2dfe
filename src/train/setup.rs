//! Getting a run ready: the UNet's parameters (from the checkpoint or a
//! fresh named config, full or LoRA) and the VAE latent cache on disk.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::data::{encode_latents, CachedLatent, DataEntry};
use crate::diffusion::config::{PerBlock, UnetConfig};
use crate::diffusion::unet::Unet;
use crate::diffusion::vae::Vae;
use crate::diffusion::StableDiffusion;
use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::nn::params::ParamSet;
use crate::nn::weights::{write_safetensors, WeightStore};
use crate::progress::Progress;

/// The named UNet configs for training from scratch.
pub const NAMED_CONFIGS: [&str; 4] = ["tiny", "compact", "small", "sd15"];

/// A named UNet config (`tiny`: ~2 M parameters for CPU tests; `compact`:
/// ~4 M, channels 32-64-128 with attention on the two lower levels only,
/// sized for 128-bin spectrograms generated faster than real time on two
/// CPU cores; `small`:
/// ~100 M; `sd15`: SD 1.5's 860 M), fitted to the text encoder width and
/// latent channels of the pipeline it joins.
pub fn named_config(
    name: &str,
    cross_attention_dim: usize,
    latent_channels: usize,
) -> Result<UnetConfig> {
    let mut c = UnetConfig::sd15();
    match name {
        "sd15" => {}
        "small" => {
            c.block_out_channels = vec![128, 256, 512, 512];
        }
        "compact" => {
            c.block_out_channels = vec![32, 64, 128];
            c.down_block_types = vec![
                "DownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
            ];
            c.up_block_types = vec![
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "UpBlock2D".into(),
            ];
            c.layers_per_block = PerBlock::One(1);
            c.attention_head_dim = PerBlock::One(4);
            c.norm_num_groups = 8;
        }
        "tiny" => {
            c.block_out_channels = vec![32, 64, 64];
            c.down_block_types = vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ];
            c.up_block_types = vec![
                "UpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
            ];
            c.layers_per_block = PerBlock::One(1);
            c.attention_head_dim = PerBlock::One(4);
            c.norm_num_groups = 8;
        }
        other => {
            return Err(Error::UnknownName {
                kind: "training config",
                name: other.to_string(),
                suggestions: NAMED_CONFIGS.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
    c.cross_attention_dim = cross_attention_dim;
    c.in_channels = latent_channels;
    c.out_channels = latent_channels;
    Ok(c)
}

/// Where the UNet's starting weights come from.
#[derive(Debug, Clone)]
pub enum UnetStart {
    /// The loaded checkpoint's UNet.
    Checkpoint,
    /// A fresh model of a named config (see [`named_config`]), seeded.
    Fresh(String),
}

/// The UNet config and parameters of a run. With LoRA the base weights
/// are frozen in `frozen_dtype`.
pub fn unet_params(
    sd: &StableDiffusion,
    start: &UnetStart,
    lora: Option<LoraConfig>,
    frozen_dtype: DType,
    seed: u64,
) -> Result<(UnetConfig, ParamSet)> {
    let device = sd.unet.device().clone();
    let (config, tensors, source): (UnetConfig, HashMap<String, Tensor>, String) = match start {
        UnetStart::Checkpoint => {
            let file = sd.component_weights("unet")?;
            let store = WeightStore::open(file, &device)?;
            let tensors = store
                .names()
                .into_iter()
                .filter_map(|n| store.tensor(&n).map(|t| (n.clone(), t.clone())))
                .collect();
            (
                sd.unet.config().clone(),
                tensors,
                file.display().to_string(),
            )
        }
        UnetStart::Fresh(name) => {
            let config = named_config(
                name,
                sd.text_encoder.config().hidden_size,
                sd.vae.config().latent_channels,
            )?;
            let fresh =
                ParamSet::fresh(name, seed, &device, |vb| Unet::new(vb, &config).map(|_| ()))?;
            let tensors = fresh.named_snapshot()?.into_iter().collect();
            (config, tensors, format!("fresh `{name}` UNet"))
        }
    };
    let params = ParamSet::from_tensors(
        Path::new(&source),
        tensors,
        lora,
        frozen_dtype,
        seed,
        &device,
    )?;
    Ok((config, params))
}

/// The VAE latents of every entry, cached in `cache_file` (safetensors,
/// `{file_name}.mean` / `.std`, each image's hash in `<cache>.json`):
/// entries whose image is unchanged are read back, the rest encoded, and
/// the cache rewritten when anything changed.
pub fn cached_latents(
    data_dir: &Path,
    entries: &[DataEntry],
    vae: &Vae,
    cache_file: &Path,
    progress: &dyn Progress,
) -> Result<Vec<CachedLatent>> {
    let reuse = read_cache(cache_file).unwrap_or_else(|e| {
        if cache_file.exists() {
            progress.message(&format!("latent cache not reused: {e}"));
        }
        HashMap::new()
    });
    let latents = encode_latents(data_dir, entries, vae, &reuse, progress)?;
    let unchanged = entries.len() == reuse.len()
        && entries.iter().zip(&latents).all(|(e, l)| {
            reuse
                .get(&e.file_name)
                .is_some_and(|c| c.file_hash == l.file_hash)
        });
    if !unchanged {
        write_cache(cache_file, entries, &latents)?;
    }
    Ok(latents)
}

/// The image hashes of a latent cache (`<cache>.json` beside it).
fn manifest_path(cache: &Path) -> std::path::PathBuf {
    cache.with_extension("json")
}

fn write_cache(path: &Path, entries: &[DataEntry], latents: &[CachedLatent]) -> Result<()> {
    let mut tensors = Vec::with_capacity(2 * entries.len());
    let mut hashes = std::collections::BTreeMap::new();
    for (e, l) in entries.iter().zip(latents) {
        tensors.push((format!("{}.mean", e.file_name), l.mean.clone()));
        tensors.push((format!("{}.std", e.file_name), l.std.clone()));
        hashes.insert(e.file_name.clone(), format!("{:016x}", l.file_hash));
    }
    write_safetensors(path, &tensors)?;
    crate::fsutil::write_json_atomic(&manifest_path(path), &hashes)
}

fn read_cache(path: &Path) -> Result<HashMap<String, CachedLatent>> {
    let hashes: HashMap<String, String> = crate::fsutil::read_json(&manifest_path(path))?;
    let store = WeightStore::open(path, &Device::Cpu)?;
    let mut out = HashMap::new();
    for (file, hash) in hashes {
        let get = |suffix: &str| {
            store
                .tensor(&format!("{file}{suffix}"))
                .cloned()
                .ok_or_else(|| Error::Checkpoint {
                    file: path.to_path_buf(),
                    reason: format!("tensor `{file}{suffix}` is missing"),
                })
        };
        let file_hash = u64::from_str_radix(&hash, 16).map_err(|e| Error::InvalidData {
            file: manifest_path(path).display().to_string(),
            reason: format!("hash of {file}: {e}"),
        })?;
        out.insert(
            file.clone(),
            CachedLatent {
                mean: get(".mean")?,
                std: get(".std")?,
                file_hash,
            },
        );
    }
    Ok(out)
}
