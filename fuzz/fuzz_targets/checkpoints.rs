#![no_main]
//! Checkpoint files as ragafusion loads them. The first byte picks the
//! kind: safetensors bytes (the header parser and every tensor), a PyTorch
//! `.bin` (zip + pickle), a component `config.json` parsed and validated
//! as each model family's config, or a pipeline's `ragafusion.json`.

use std::path::Path;

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use ragafusion::diffusion::config::{ClipTextConfig, UnetConfig, VaeConfig};
use ragafusion::diffusion::defaults::ModelDefaults;
use ragafusion::diffusion::schedulers::SchedulerConfig;
use ragafusion::musicgen::MusicgenConfig;
use ragafusion::nn::weights::WeightStore;
use ragafusion::spectrogram::SpectrogramParams;

fn in_temp_file(name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join(name), bytes).expect("temporary file");
    dir
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let file = Path::new("config.json");
    match pick % 4 {
        0 => {
            let st = Path::new("model.safetensors");
            let _ = WeightStore::from_safetensors_bytes(st, bytes, &Device::Cpu);
        }
        1 => {
            let dir = in_temp_file("model.bin", bytes);
            let _ = WeightStore::open(&dir.path().join("model.bin"), &Device::Cpu);
        }
        2 => {
            if let Ok(c) = serde_json::from_slice::<UnetConfig>(bytes) {
                let _ = c.validate(file);
            }
            if let Ok(c) = serde_json::from_slice::<VaeConfig>(bytes) {
                let _ = c.validate(file);
            }
            if let Ok(c) = serde_json::from_slice::<ClipTextConfig>(bytes) {
                let _ = c.validate(file);
            }
            if let Ok(c) = serde_json::from_slice::<SchedulerConfig>(bytes) {
                let _ = c.validate(file);
            }
            if let Ok(c) = serde_json::from_slice::<MusicgenConfig>(bytes) {
                let _ = c.validate(file);
            }
            if let Ok(p) = serde_json::from_slice::<SpectrogramParams>(bytes) {
                let _ = p.validate();
            }
        }
        _ => {
            let dir = in_temp_file("ragafusion.json", bytes);
            let _ = ModelDefaults::read(dir.path());
        }
    }
});
