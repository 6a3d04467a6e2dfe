//! Parity with transformers on the tiny random MusicGen checkpoints
//! (tests/data/musicgen-tiny and musicgen-tiny-stereo, made by
//! tools/make_musicgen_fixtures.py, which also wrote the reference outputs
//! in tests/data/musicgen-tiny-reference.safetensors).

use std::path::{Path, PathBuf};

mod common;

use common::max_diff;

use candle_core::{DType, Device, Tensor};
use ragafusion::audio::Audio;
use ragafusion::musicgen::{
    audio_to_codes, codes_to_audio, generate_codes, GenerateSettings, MusicGen, Sampling,
};
use ragafusion::nn::weights::WeightStore;
use ragafusion::NoProgress;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn model(name: &str) -> MusicGen {
    MusicGen::load(&data().join(name), &Device::Cpu, DType::F32).unwrap()
}

fn reference() -> WeightStore {
    WeightStore::open(
        &data().join("musicgen-tiny-reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn get(r: &WeightStore, name: &str) -> Tensor {
    r.tensor(name)
        .unwrap_or_else(|| panic!("reference tensor {name}"))
        .clone()
}

fn ids(r: &WeightStore, name: &str) -> Tensor {
    get(r, name).to_dtype(DType::U32).unwrap()
}

/// `[1, k, f]` integer codes as rows.
fn code_rows(t: &Tensor) -> Vec<Vec<u32>> {
    t.squeeze(0)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn greedy(guidance: f64) -> GenerateSettings {
    GenerateSettings {
        guidance,
        sampling: Sampling {
            greedy: true,
            ..Sampling::default()
        },
        seed: 0,
    }
}

/// A count stored in the reference file's metadata.
fn meta(key: &str) -> usize {
    let file = data().join("musicgen-tiny-reference.safetensors");
    let bytes = std::fs::read(file).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().as_ref().unwrap()[key].parse().unwrap()
}

#[test]
fn tokenizer_and_t5_match_transformers() {
    let m = model("musicgen-tiny");
    let r = reference();
    let want_ids: Vec<Vec<u32>> = ids(&r, "text.ids").to_vec2().unwrap();
    let mask: Vec<Vec<u32>> = ids(&r, "text.mask").to_vec2().unwrap();
    let prompts = [
        "kalyani raga, adi tala, alapana",
        "a slow mohanam kriti by tyagaraja with violin and mridangam",
    ];
    for (i, p) in prompts.iter().enumerate() {
        let n = mask[i].iter().filter(|&&v| v == 1).count();
        assert_eq!(
            m.tokenize(p).unwrap(),
            want_ids[i][..n].to_vec(),
            "prompt {i}"
        );
    }
    let hidden = m
        .text
        .forward(&ids(&r, "text.ids"), &ids(&r, "text.mask"))
        .unwrap();
    let d = max_diff(&hidden, &get(&r, "text.hidden"));
    assert!(d < 1e-4, "T5 hidden state differs by {d}");
    let memory = m.text_memory(&prompts).unwrap();
    let d = max_diff(&memory.hidden, &get(&r, "text.memory"));
    assert!(d < 1e-4, "projected memory differs by {d}");
}

#[test]
fn decoder_logits_match_transformers() {
    let m = model("musicgen-tiny");
    let r = reference();
    let memory = get(&r, "text.memory");
    let mask = get(&r, "text.mask").to_dtype(DType::F32).unwrap();
    let dec_ids = ids(&r, "decoder.ids"); // [2 * 4, s]
    let s = dec_ids.dim(1).unwrap();
    let tokens = dec_ids.reshape((2, 4, s)).unwrap();
    let want = get(&r, "decoder.logits").reshape((2, 4, s, 64)).unwrap();
    // all at once
    let mut state = m.decoder.start(&memory, &mask).unwrap();
    let logits = m.decoder.step(&mut state, &tokens, false).unwrap();
    let d = max_diff(&logits, &want);
    assert!(d < 1e-4, "logits differ by {d}");
    // a prefix, then one token at a time through the KV cache
    let mut state = m.decoder.start(&memory, &mask).unwrap();
    let first = m
        .decoder
        .step(&mut state, &tokens.narrow(2, 0, 4).unwrap(), false)
        .unwrap();
    let d = max_diff(&first, &want.narrow(2, 0, 4).unwrap());
    assert!(d < 1e-4, "prefix logits differ by {d}");
    for j in 4..s {
        let l = m
            .decoder
            .step(&mut state, &tokens.narrow(2, j, 1).unwrap(), true)
            .unwrap();
        let d = max_diff(&l, &want.narrow(2, j, 1).unwrap());
        assert!(d < 1e-4, "cached step {j}: logits differ by {d}");
    }
    assert_eq!(state.len(), s);
}

#[test]
fn encodec_decode_and_encode_match_transformers() {
    let m = model("musicgen-tiny");
    let r = reference();
    let audio = m.codec.decode(&ids(&r, "codec.codes")).unwrap();
    let want = get(&r, "codec.audio");
    let d = max_diff(&audio, &want);
    assert!(d < 1e-4, "decoded audio differs by {d}");
    let codes = m.codec.encode(&get(&r, "codec.input")).unwrap();
    assert_eq!(
        code_rows(&codes),
        code_rows(&get(&r, "codec.input_codes").squeeze(0).unwrap())
    );
}

/// EnCodecs unlike the 32 kHz geometry, saved by transformers
/// (tools/make_encodec_variants.py): one or two LSTM and residual layers,
/// other kernels, ratios and dilations, a conv shortcut, causal padding.
#[test]
fn encodec_variants_decode_and_encode_like_transformers() {
    let root = data().join("encodec-variants");
    let r = WeightStore::open(&root.join("reference.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<String> = r
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".codes").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in names {
        let m = MusicGen::load(&root.join(&name), &Device::Cpu, DType::F32)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let audio = m
            .codec
            .decode(&ids(&r, &format!("{name}.codes")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = get(&r, &format!("{name}.audio"));
        assert_eq!(audio.dims(), want.dims(), "{name}");
        let d = max_diff(&audio, &want);
        assert!(d < 1e-4, "{name}: decoded audio differs by {d}");
        let codes = m.codec.encode(&get(&r, &format!("{name}.input"))).unwrap();
        let want = get(&r, &format!("{name}.input_codes"));
        assert_eq!(
            code_rows(&codes),
            code_rows(&want.squeeze(0).unwrap()),
            "{name}"
        );
    }
}

#[test]
fn greedy_generation_matches_transformers_with_and_without_guidance() {
    let m = model("musicgen-tiny");
    let r = reference();
    let steps = meta("new_tokens");
    let memory = m.text_memory(&["kalyani raga, adi tala, alapana"]).unwrap();
    let empty = vec![Vec::new(); 4];
    for (g, key) in [(1.0, "gen.g1"), (3.0, "gen.g3")] {
        let codes =
            generate_codes(&m.decoder, &memory, &empty, steps, &greedy(g), &NoProgress).unwrap();
        assert_eq!(codes, code_rows(&get(&r, key)), "guidance {g}");
        if g == 3.0 {
            let audio = codes_to_audio(&m, &codes).unwrap();
            let got = Tensor::from_slice(
                &audio.channels[0],
                (1, 1, audio.len_samples()),
                &Device::Cpu,
            )
            .unwrap();
            let d = max_diff(&got, &get(&r, "gen.g3.audio"));
            assert!(d < 1e-4, "generated audio differs by {d}");
        }
    }
    let uncond = m.unconditional_memory(1).unwrap();
    let codes = generate_codes(
        &m.decoder,
        &uncond,
        &empty,
        steps,
        &greedy(1.0),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(codes, code_rows(&get(&r, "gen.uncond")), "unconditional");
}

#[test]
fn greedy_continuation_matches_transformers() {
    let m = model("musicgen-tiny");
    let r = reference();
    let steps = meta("cont_tokens");
    let input = get(&r, "gen.cont.input").flatten_all().unwrap();
    let audio = Audio::new(vec![input.to_vec1().unwrap()], 32000, "prompt").unwrap();
    let prompt = audio_to_codes(&m, &audio).unwrap();
    let memory = m.text_memory(&["kalyani raga, adi tala, alapana"]).unwrap();
    let codes = generate_codes(
        &m.decoder,
        &memory,
        &prompt,
        steps,
        &greedy(3.0),
        &NoProgress,
    )
    .unwrap();
    let want = code_rows(&get(&r, "gen.cont"));
    assert_eq!(codes, want);
    // the output starts with the prompt's own codes
    assert_eq!(codes[0][..prompt[0].len()], prompt[0][..]);
}

#[test]
fn stereo_greedy_generation_matches_transformers() {
    let m = model("musicgen-tiny-stereo");
    let r = reference();
    let steps = meta("new_tokens");
    let memory = m.text_memory(&["kalyani raga, adi tala, alapana"]).unwrap();
    let codes = generate_codes(
        &m.decoder,
        &memory,
        &vec![Vec::new(); 8],
        steps,
        &greedy(3.0),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(codes, code_rows(&get(&r, "stereo.g3")));
    let audio = codes_to_audio(&m, &codes).unwrap();
    assert_eq!(audio.num_channels(), 2);
    let mut flat = audio.channels[0].clone();
    flat.extend_from_slice(&audio.channels[1]);
    let got = Tensor::from_vec(flat, (1, 2, audio.len_samples()), &Device::Cpu).unwrap();
    let d = max_diff(&got, &get(&r, "stereo.g3.audio"));
    assert!(d < 1e-4, "stereo audio differs by {d}");
}

#[test]
fn f16_weights_on_the_cpu_stay_close_to_transformers() {
    // the decoder keeps its matrices in f16 and computes in f32
    let m = MusicGen::load(&data().join("musicgen-tiny"), &Device::Cpu, DType::F16).unwrap();
    let r = reference();
    let memory = get(&r, "text.memory");
    let mask = get(&r, "text.mask").to_dtype(DType::F32).unwrap();
    let tokens = ids(&r, "decoder.ids").reshape((2, 4, 9)).unwrap();
    let want = get(&r, "decoder.logits").reshape((2, 4, 9, 64)).unwrap();
    let mut state = m.decoder.start(&memory, &mask).unwrap();
    let mut logits = vec![m
        .decoder
        .step(&mut state, &tokens.narrow(2, 0, 1).unwrap(), false)
        .unwrap()];
    for j in 1..9 {
        let l = m
            .decoder
            .step(&mut state, &tokens.narrow(2, j, 1).unwrap(), true)
            .unwrap();
        logits.push(l);
    }
    let got = Tensor::cat(&logits, 2).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let d = max_diff(&got, &want);
    assert!(
        d > 0.0 && d < 2e-3 * scale,
        "f16 logits differ by {d} (scale {scale})"
    );
}
