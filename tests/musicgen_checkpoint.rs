//! MusicGen checkpoint loading: the published sizes build with the right
//! shapes, every storage layout loads the same model, and checkpoints that
//! do not match their config are refused with the tensor named.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use ragafusion::musicgen::config::{DecoderConfig, EncodecConfig, T5Config};
use ragafusion::musicgen::decoder::Decoder;
use ragafusion::musicgen::encodec::Encodec;
use ragafusion::musicgen::t5::T5Encoder;
use ragafusion::musicgen::MusicGen;
use ragafusion::nn::weights::{write_safetensors, WeightStore};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Hands out zero tensors of any shape without allocating them, recording
/// what each layer asked for.
#[derive(Default)]
struct Recorder(Mutex<BTreeMap<String, Vec<usize>>>);

impl SimpleBackend for &'static Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected unchecked get of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

fn record(build: impl FnOnce(&VarBuilder)) -> BTreeMap<String, Vec<usize>> {
    let rec: &'static Recorder = Box::leak(Box::default());
    let vb = VarBuilder::from_backend(Box::new(rec), DType::F32, Device::Cpu);
    build(&vb);
    rec.0.lock().unwrap().clone()
}

fn count(shapes: &BTreeMap<String, Vec<usize>>, filter: impl Fn(&str) -> bool) -> usize {
    shapes
        .iter()
        .filter(|(n, _)| filter(n))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

#[test]
fn published_decoder_sizes_build_with_the_right_shapes() {
    // (size, decoder parameters: embeddings, layers with cross-attention,
    // heads; the published "300M / 1.5B / 3.3B" names are rounder)
    for (size, params) in [
        ("small", 419_584_000),
        ("medium", 1_837_556_736),
        ("large", 3_255_382_016),
    ] {
        let c = DecoderConfig::preset(size).unwrap();
        let shapes = record(|vb| {
            Decoder::new(&vb.pp("decoder"), &c, c.hidden_size).unwrap();
        });
        let (h, f, v, l) = (c.hidden_size, c.ffn_dim, c.vocab_size, c.num_hidden_layers);
        let p = "decoder.model.decoder";
        assert_eq!(
            shapes[&format!("{p}.embed_tokens.3.weight")],
            vec![v + 1, h]
        );
        assert_eq!(
            shapes[&format!("{p}.layers.{}.fc1.weight", l - 1)],
            vec![f, h]
        );
        assert_eq!(
            shapes[&format!("{p}.layers.0.encoder_attn.k_proj.weight")],
            vec![h, h]
        );
        assert_eq!(shapes["decoder.lm_heads.3.weight"], vec![v, h]);
        assert!(!shapes.contains_key(&format!("{p}.layers.{l}.fc1.weight")));
        let total = count(&shapes, |_| true);
        let per_layer = 8 * h * h + 2 * h * f + 6 * h;
        assert_eq!(
            total,
            4 * (v + 1) * h + l * per_layer + 2 * h + 4 * v * h,
            "{size}"
        );
        assert_eq!(total, params, "{size}");
    }
}

#[test]
fn t5_base_and_the_32khz_codec_build_with_the_right_shapes() {
    let t5: T5Config = serde_json::from_str(
        r#"{"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072,
            "num_layers": 12, "num_heads": 12}"#,
    )
    .unwrap();
    let shapes = record(|vb| {
        T5Encoder::new(&vb.pp("text_encoder"), &t5).unwrap();
    });
    assert_eq!(
        shapes["text_encoder.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
        vec![32, 12]
    );
    assert_eq!(
        shapes["text_encoder.encoder.block.11.layer.1.DenseReluDense.wi.weight"],
        vec![3072, 768]
    );
    // T5-base's encoder: 109.6 M parameters with the shared embedding
    let total = count(&shapes, |_| true);
    assert_eq!(total, 109_628_544);

    let codec: EncodecConfig = serde_json::from_str(
        r#"{"sampling_rate": 32000, "num_filters": 64, "hidden_size": 128,
            "codebook_size": 2048, "upsampling_ratios": [8, 5, 4, 4],
            "target_bandwidths": [2.2], "use_conv_shortcut": false}"#,
    )
    .unwrap();
    let shapes = record(|vb| {
        Encodec::new(&vb.pp("audio_encoder"), &codec).unwrap();
    });
    assert_eq!(
        shapes["audio_encoder.decoder.layers.3.conv.weight"],
        vec![1024, 512, 16]
    );
    assert_eq!(
        shapes["audio_encoder.encoder.layers.13.lstm.weight_hh_l1"],
        vec![4096, 1024]
    );
    assert_eq!(
        shapes["audio_encoder.quantizer.layers.3.codebook.embed"],
        vec![2048, 128]
    );
    assert_eq!(
        shapes["audio_encoder.decoder.layers.15.conv.weight"],
        vec![1, 64, 7]
    );
}

fn tensors(dir: &Path) -> HashMap<String, Tensor> {
    WeightStore::open(&dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .to_map()
}

fn save(dir: &Path, map: &HashMap<String, Tensor>) {
    let list: Vec<(String, Tensor)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_safetensors(&dir.join("model.safetensors"), &list).unwrap();
}

fn tiny_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&data().join("musicgen-tiny"), dir.path());
    dir
}

fn load(dir: &Path) -> Result<MusicGen, String> {
    MusicGen::load(dir, &Device::Cpu, DType::F32).map_err(|e| e.to_string())
}

fn logits(m: &MusicGen) -> Vec<f32> {
    let memory = m.text_memory(&["kalyani raga"]).unwrap();
    let mut state = m.decoder.start(&memory.hidden, &memory.mask).unwrap();
    let tokens = Tensor::new(&[[[64u32, 3], [64, 64], [64, 64], [64, 64]]], &Device::Cpu).unwrap();
    m.decoder
        .step(&mut state, &tokens, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn legacy_weight_norm_names_and_shards_load_the_same_model() {
    let want = logits(&load(&data().join("musicgen-tiny")).unwrap());
    let want_audio = {
        let m = load(&data().join("musicgen-tiny")).unwrap();
        let codes = Tensor::new(
            &[[[1u32, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1]]],
            &Device::Cpu,
        )
        .unwrap();
        m.codec
            .decode(&codes)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    // weight_g / weight_v, as published checkpoints store weight norm
    let dir = tiny_copy();
    let renamed: HashMap<String, Tensor> = tensors(dir.path())
        .into_iter()
        .map(|(k, v)| {
            let k = k
                .replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v");
            (k, v)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.ends_with("weight_g")));
    save(dir.path(), &renamed);
    let m = load(dir.path()).unwrap();
    assert_eq!(logits(&m), want);
    let codes = Tensor::new(
        &[[[1u32, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1]]],
        &Device::Cpu,
    )
    .unwrap();
    let audio: Vec<f32> = m
        .codec
        .decode(&codes)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(audio, want_audio);

    // two shards and an index, as large checkpoints are saved
    let all = tensors(dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let list: Vec<(String, Tensor)> = chunk
            .iter()
            .map(|k| ((*k).clone(), all[*k].clone()))
            .collect();
        write_safetensors(&dir.path().join(&file), &list).unwrap();
        for k in chunk {
            weight_map.insert((*k).clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_eq!(logits(&load(dir.path()).unwrap()), want);
}

#[test]
fn mismatched_checkpoints_name_the_tensor() {
    // a config that does not match the weights
    let dir = tiny_copy();
    let cfg_file = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_file).unwrap();
    std::fs::write(
        &cfg_file,
        text.replace("\"ffn_dim\": 96", "\"ffn_dim\": 128"),
    )
    .unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("model.safetensors")
            && e.contains("decoder.model.decoder.layers.0.fc1.weight")
            && e.contains("[96, 48]"),
        "{e}"
    );

    // a missing tensor
    let dir = tiny_copy();
    let mut map = tensors(dir.path());
    map.remove("decoder.lm_heads.2.weight");
    save(dir.path(), &map);
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("decoder.lm_heads.2.weight") && e.contains("missing"),
        "{e}"
    );

    // a tensor no layer uses (another architecture)
    let dir = tiny_copy();
    let mut map = tensors(dir.path());
    map.insert(
        "decoder.model.decoder.layers.2.fc1.weight".into(),
        Tensor::zeros((96, 48), DType::F32, &Device::Cpu).unwrap(),
    );
    save(dir.path(), &map);
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("decoder.model.decoder.layers.2.fc1.weight"),
        "{e}"
    );

    // missing files
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(e.contains("no weights"), "{e}");

    // a truncated weights file
    let dir = tiny_copy();
    let f = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    // a config the models cannot build
    let dir = tiny_copy();
    let cfg_file = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_file).unwrap();
    std::fs::write(
        &cfg_file,
        text.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
    )
    .unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("config.json") && e.contains("decoder.num_attention_heads"),
        "{e}"
    );
    // a melody-conditioned checkpoint
    std::fs::write(
        &cfg_file,
        text.replace(
            "\"model_type\": \"musicgen\"",
            "\"model_type\": \"musicgen_melody\"",
        ),
    )
    .unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.contains("model_type") && e.contains("musicgen_melody"),
        "{e}"
    );
}
