//! The engine: one request type, one generation loop per backend, one way
//! to write the results, and a job queue. Every front end (the command
//! line, `compare`, the server) goes through here.
//!
//! ```text
//! request.rs    GenerateRequest: text, audio-to-audio, interpolation, long
//!               form, continuation; backend choice; tonic
//! defaults.rs   every default, once
//! diffusion.rs  the spectrogram diffusion loop
//! musicgen.rs   the MusicGen loop
//! outputs.rs    Generated, and writing WAV / PNG / JSON sidecar
//! resume.rs     an interrupted request's saved state, for the rerun
//! analyze.rs    an analysis job: a clip's figure and facts
//! score_video.rs  music fitted to a video, levelled and muxed
//! jobs.rs       a queue of jobs with progress events and cancel
//! ```

pub mod analyze;
pub mod defaults;
mod diffusion;
pub mod jobs;
mod musicgen;
pub mod outputs;
pub mod request;
pub mod resume;
pub mod score_video;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{DType, Device};
use serde_json::json;

use crate::diffusion::defaults::default_model_dir;
use crate::diffusion::pipeline::Checkpoints;
use crate::diffusion::{LoadOptions, StableDiffusion};
use crate::error::{Error, Result};
use crate::musicgen::MusicGen;
use crate::progress::Progress;

pub use analyze::AnalyzeRequest;
pub use jobs::{Job, JobEvent, JobId, JobQueue, JobState, JobStatus, Work};
pub use outputs::{slug, spectrogram_output, write_outputs, Generated};
pub use request::{Backend, GenerateRequest, MusicgenOptions, Task};
pub use resume::PartialDir;

/// Which model to load and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The model family.
    pub backend: Backend,
    /// Checkpoint folder. Diffusion: default `$RAGAFUSION_MODEL`, else the
    /// shipped model; MusicGen needs one.
    pub dir: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute dtype of the large models: `f32`, `f16` or `bf16` (CUDA).
    pub dtype: String,
    /// Weights variant to prefer (diffusion), e.g. `fp16`.
    pub variant: Option<String>,
    /// Attention computed for this many batch x head slices at a time
    /// (diffusion; `None`: automatic).
    pub attention_slice: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            backend: Backend::Diffusion,
            dir: None,
            device: defaults::DEVICE.into(),
            dtype: defaults::DTYPE.into(),
            variant: None,
            attention_slice: None,
        }
    }
}

/// A loaded model of either family.
#[derive(Debug)]
pub enum Model {
    /// A Stable Diffusion pipeline.
    Diffusion(Box<StableDiffusion>),
    /// A MusicGen checkpoint.
    Musicgen(Box<MusicGen>),
}

/// A loaded model ready to serve requests.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    spec: ModelSpec,
    dir: PathBuf,
    load_s: f64,
    content_hash: OnceLock<String>,
}

/// A device name (`cpu`, `cuda`, `cuda:N`) and a dtype name (`f32`,
/// `f16`, `bf16`); bf16 is refused on the CPU, which has no bf16 matrix
/// product in candle.
pub fn device_and_dtype(device: &str, dtype: &str) -> Result<(Device, DType)> {
    let device = match device {
        "cpu" => Device::Cpu,
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::param("device", format!("`{s}`: expected cuda:N")))?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                Error::param(
                    "device",
                    format!("`{s}`: {e} (is this a build with --features cuda?)"),
                )
            })?
        }
        other => {
            return Err(Error::param(
                "device",
                format!("`{other}`: expected cpu, cuda or cuda:N"),
            ))
        }
    };
    let dtype = match dtype {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => {
            return Err(Error::param(
                "dtype",
                format!("`{other}`: expected f32, f16 or bf16"),
            ))
        }
    };
    if dtype == DType::BF16 && device.is_cpu() {
        return Err(Error::param(
            "dtype",
            "bf16 needs a CUDA device (candle has no bf16 matrix product on the CPU); use f32 or f16",
        ));
    }
    Ok((device, dtype))
}

impl Engine {
    /// Loads the model `spec` names.
    pub fn load(spec: &ModelSpec) -> Result<Self> {
        let (device, dtype) = device_and_dtype(&spec.device, &spec.dtype)?;
        if spec.attention_slice == Some(0) {
            return Err(Error::param("attention-slice", "must be at least 1"));
        }
        let t0 = Instant::now();
        let (model, dir) = match spec.backend {
            Backend::Diffusion => {
                let dir = match &spec.dir {
                    Some(d) => d.clone(),
                    None => default_model_dir()?,
                };
                let opts = LoadOptions {
                    dtype,
                    vae_dtype: DType::F32,
                    device,
                    variant: spec.variant.clone(),
                };
                let mut sd = StableDiffusion::load(&dir, &opts)?;
                if spec.attention_slice.is_some() {
                    sd.unet.set_attention_slice(spec.attention_slice)?;
                }
                (Model::Diffusion(Box::new(sd)), dir)
            }
            Backend::Musicgen => {
                if spec.variant.is_some() {
                    return Err(Error::param(
                        "variant",
                        "applies to --backend diffusion only",
                    ));
                }
                if spec.attention_slice.is_some() {
                    return Err(Error::param(
                        "attention-slice",
                        "applies to --backend diffusion only",
                    ));
                }
                let Some(dir) = spec.dir.clone() else {
                    return Err(Error::param(
                        "model",
                        "--backend musicgen needs --model (a MusicGen checkpoint folder)",
                    ));
                };
                let m = MusicGen::load(&dir, &device, dtype)?;
                (Model::Musicgen(Box::new(m)), dir)
            }
        };
        Ok(Self {
            model,
            spec: spec.clone(),
            dir,
            load_s: t0.elapsed().as_secs_f64(),
            content_hash: OnceLock::new(),
        })
    }

    /// The model family.
    pub fn backend(&self) -> Backend {
        self.spec.backend
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seconds the model took to load.
    pub fn load_s(&self) -> f64 {
        self.load_s
    }

    /// Whether a requested tonic is played by transposition (a diffusion
    /// model with a canonical tonic); other models get the tonic through
    /// the caption only.
    pub fn plays_tonics(&self) -> bool {
        match &self.model {
            Model::Diffusion(sd) => sd.defaults.canonical_tonic_hz.is_some(),
            Model::Musicgen(_) => false,
        }
    }

    /// The model's record in sidecars: folder, content hash, device, dtype.
    pub fn model_record(&self) -> Result<serde_json::Value> {
        let hash = match self.content_hash.get() {
            Some(h) => h.clone(),
            None => {
                let h = match &self.model {
                    Model::Diffusion(sd) => sd.content_hash()?,
                    Model::Musicgen(m) => m.content_hash()?,
                };
                self.content_hash.get_or_init(|| h).clone()
            }
        };
        Ok(json!({
            "path": self.dir.display().to_string(),
            "content_hash": hash,
            "device": self.spec.device,
            "dtype": self.spec.dtype,
        }))
    }

    /// The settings that shape a request's output after the model's and
    /// the built-in defaults are applied, for reports.
    pub fn effective_settings(&self, request: &GenerateRequest) -> Result<serde_json::Value> {
        match &self.model {
            Model::Diffusion(sd) => diffusion::effective_settings(sd, request),
            Model::Musicgen(_) => Ok(musicgen::effective_settings(request)),
        }
    }

    /// Runs a request, handing each output to `emit` as soon as it exists
    /// (a batch item, an interpolation clip, the joined file).
    pub fn generate_each(
        &self,
        request: &GenerateRequest,
        progress: &dyn Progress,
        emit: &mut dyn FnMut(Generated) -> Result<()>,
    ) -> Result<()> {
        self.run(request, None, progress, emit)
    }

    /// Runs a request into the folder `out_dir`, writing each output (WAV,
    /// PNG, JSON) as soon as it exists and calling `written` with its WAV.
    /// Diffusion runs save their state in `out_dir/.partial/` as they go
    /// (denoising steps at most every `checkpoint_every_s` seconds and on
    /// cancel; finished clips always), so a rerun of the same request after
    /// an interruption (cancel, Ctrl-C, a crash) continues where it stopped
    /// and writes the same bytes; the saved state is removed once every
    /// output is written.
    pub fn generate_into(
        &self,
        request: &GenerateRequest,
        out_dir: &Path,
        checkpoint_every_s: f64,
        progress: &dyn Progress,
        written: &mut dyn FnMut(&Path),
    ) -> Result<Vec<PathBuf>> {
        request.check(self.backend())?;
        let fingerprint = resume::fingerprint(request, &self.model_record()?)?;
        let store = PartialDir::new(out_dir, &fingerprint, checkpoint_every_s);
        if store.exists() {
            progress.message(&format!(
                "resuming from the saved state in {}",
                store.dir().display()
            ));
        }
        let mut wavs = Vec::new();
        let result = self.run(request, Some(&store), progress, &mut |made| {
            let wav = write_outputs(out_dir, &made)?;
            written(&wav);
            wavs.push(wav);
            Ok(())
        });
        if matches!(result, Err(Error::Cancelled)) && store.exists() {
            progress.message(&format!(
                "stopped: the work so far is saved in {}; run the same request again to continue",
                store.dir().display()
            ));
        }
        result?;
        store.remove()?;
        Ok(wavs)
    }

    fn run(
        &self,
        request: &GenerateRequest,
        store: Option<&dyn Checkpoints>,
        progress: &dyn Progress,
        emit: &mut dyn FnMut(Generated) -> Result<()>,
    ) -> Result<()> {
        request.check(self.backend())?;
        let emit = &mut |mut made: Generated| {
            made.inputs = request.input_files();
            emit(made)
        };
        match &self.model {
            Model::Diffusion(sd) => diffusion::generate(self, sd, request, store, progress, emit),
            Model::Musicgen(m) => musicgen::generate(self, m, request, progress, emit),
        }
    }

    /// Runs a request and returns its outputs.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        progress: &dyn Progress,
    ) -> Result<Vec<Generated>> {
        let mut out = Vec::new();
        self.generate_each(request, progress, &mut |g| {
            out.push(g);
            Ok(())
        })?;
        Ok(out)
    }
}
