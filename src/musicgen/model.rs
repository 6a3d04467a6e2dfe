//! A MusicGen checkpoint folder in the transformers layout -> [`MusicGen`]:
//! `config.json`, `tokenizer.json`, and the weights as `model.safetensors`,
//! sharded safetensors (`model.safetensors.index.json`), or the PyTorch
//! equivalents. Every tensor of the files must be used by the model the
//! config describes, with the shape it implies; errors name the file and
//! the tensor.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;

use super::config::MusicgenConfig;
use super::decoder::Decoder;
use super::encodec::Encodec;
use super::t5::T5Encoder;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::layers::linear;
use crate::nn::weights::{tensor_err, WeightStore};

/// Text memory for the decoder: `[b, s, W]` and its 0/1 mask `[b, s]`.
#[derive(Debug, Clone)]
pub struct Memory {
    /// The projected, masked T5 output.
    pub hidden: Tensor,
    /// 1 for real tokens, 0 for padding (all 0: unconditional).
    pub mask: Tensor,
}

/// A loaded MusicGen model.
#[derive(Debug)]
pub struct MusicGen {
    /// The checkpoint's config.
    pub config: MusicgenConfig,
    /// The text encoder (f32).
    pub text: T5Encoder,
    /// `enc_to_dec_proj`, when the text width differs from the decoder's.
    pub projection: Option<Linear>,
    /// The decoder.
    pub decoder: Decoder,
    /// The audio codec (f32).
    pub codec: Encodec,
    tokenizer: tokenizers::Tokenizer,
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The weight files read.
    pub weight_files: Vec<PathBuf>,
}

/// The weight files of a checkpoint folder, and the name that errors about
/// their tensors use (the single file, or the shard index).
fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf)> {
    for single in ["model.safetensors", "pytorch_model.bin"] {
        let f = dir.join(single);
        if f.is_file() {
            return Ok((vec![f.clone()], f));
        }
    }
    for index in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        let f = dir.join(index);
        if !f.is_file() {
            continue;
        }
        let json: serde_json::Value = crate::fsutil::read_json(&f)?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::checkpoint(&f, "no `weight_map` object"))?;
        let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        if shards.is_empty() {
            return Err(Error::checkpoint(&f, "`weight_map` names no shard"));
        }
        let files = shards.iter().map(|s| dir.join(s)).collect();
        return Ok((files, f));
    }
    Err(Error::checkpoint(
        dir,
        "no weights (looked for model.safetensors, model.safetensors.index.json, \
         pytorch_model.bin, pytorch_model.bin.index.json)",
    ))
}

impl MusicGen {
    /// Loads the checkpoint in `dir`; the decoder computes in `dtype`, the
    /// text encoder and the codec in f32.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::checkpoint(
                dir,
                "not a folder (expected a transformers MusicGen checkpoint with config.json)",
            ));
        }
        let config_file = dir.join("config.json");
        if !config_file.is_file() {
            return Err(Error::checkpoint(
                &config_file,
                "missing (the model config)",
            ));
        }
        let config = MusicgenConfig::read(&config_file)?;
        let tok_file = dir.join("tokenizer.json");
        if !tok_file.is_file() {
            return Err(Error::checkpoint(
                &tok_file,
                "missing (the T5 tokenizer; spiece.model alone is not read)",
            ));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_file)
            .map_err(|e| Error::checkpoint(&tok_file, format!("cannot read the tokenizer: {e}")))?;

        let (files, name) = weight_files(dir)?;
        let mut tensors = HashMap::new();
        for f in &files {
            if !f.is_file() {
                return Err(Error::checkpoint(f, "missing (named by the shard index)"));
            }
            let store = WeightStore::open(f, device)?;
            tensors.extend(store.to_map());
        }
        let store = WeightStore::from_tensors(&name, tensors);
        let err = tensor_err(&name);
        let vb32 = store.var_builder(DType::F32, device);
        let text = T5Encoder::new(&vb32.pp("text_encoder"), &config.text_encoder).map_err(&err)?;
        let projection = if config.has_projection() {
            Some(
                linear(
                    &vb32,
                    "enc_to_dec_proj",
                    config.text_encoder.d_model,
                    config.decoder.hidden_size,
                )
                .map_err(&err)?,
            )
        } else {
            None
        };
        let vb = store.var_builder(dtype, device);
        let decoder = Decoder::new(&vb.pp("decoder"), &config.decoder, config.memory_width())
            .map_err(&err)?;
        let codec = Encodec::new(&vb32.pp("audio_encoder"), &config.audio_encoder).map_err(&err)?;
        store.check_all_used()?;
        Ok(Self {
            config,
            text,
            projection,
            decoder,
            codec,
            tokenizer,
            dir: dir.to_path_buf(),
            weight_files: files,
        })
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.decoder.device()
    }

    /// Audio samples per second of the output.
    pub fn sample_rate_hz(&self) -> u32 {
        self.config.audio_encoder.sampling_rate
    }

    /// Code frames per second.
    pub fn frame_rate(&self) -> usize {
        self.config.audio_encoder.frame_rate()
    }

    /// Output audio channels (1 or 2).
    pub fn channels(&self) -> usize {
        self.config.decoder.audio_channels
    }

    /// Token ids of `prompt` (T5: ends with `</s>`).
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| Error::param("prompt", format!("cannot be tokenized: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text memory of `prompts`, padded (with id 0) to the longest.
    pub fn text_memory(&self, prompts: &[&str]) -> Result<Memory> {
        let ids = prompts
            .iter()
            .map(|p| self.tokenize(p))
            .collect::<Result<Vec<_>>>()?;
        let t = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut flat = Vec::with_capacity(ids.len() * t);
        let mut mask = Vec::with_capacity(ids.len() * t);
        for row in &ids {
            for j in 0..t {
                flat.push(row.get(j).copied().unwrap_or(0));
                mask.push(u32::from(j < row.len()));
            }
        }
        let dev = self.device();
        let b = ids.len();
        let ids = Tensor::from_vec(flat, (b, t), dev).map_err(terr("musicgen"))?;
        let mask = Tensor::from_vec(mask, (b, t), dev).map_err(terr("musicgen"))?;
        self.memory_of_ids(&ids, &mask)
    }

    /// The text memory of token ids `[b, t]` with mask `[b, t]` (u32).
    pub fn memory_of_ids(&self, ids: &Tensor, mask: &Tensor) -> Result<Memory> {
        let run = || -> candle_core::Result<Memory> {
            let hidden = self.text.forward(ids, mask)?;
            let hidden = match &self.projection {
                Some(p) => p.forward(&hidden)?,
                None => hidden,
            };
            let m = mask.to_dtype(DType::F32)?;
            let hidden = hidden.broadcast_mul(&m.unsqueeze(2)?)?;
            Ok(Memory { hidden, mask: m })
        };
        run().map_err(terr("musicgen"))
    }

    /// The memory of no text: one zero vector, masked out.
    pub fn unconditional_memory(&self, batch: usize) -> Result<Memory> {
        let w = self.config.memory_width();
        let dev = self.device();
        Ok(Memory {
            hidden: Tensor::zeros((batch, 1, w), DType::F32, dev).map_err(terr("musicgen"))?,
            mask: Tensor::zeros((batch, 1), DType::F32, dev).map_err(terr("musicgen"))?,
        })
    }

    /// A 64-bit content hash (xxh3) of the config and weight files, hex.
    pub fn content_hash(&self) -> Result<String> {
        let mut files = vec![self.dir.join("config.json")];
        files.extend(self.weight_files.iter().cloned());
        crate::fsutil::content_hash(&files)
    }
}
