#!/usr/bin/env python3
"""Tiny MusicGen checkpoints whose EnCodec differs from the 32 kHz geometry.

tests/data/musicgen-tiny has the codec layout of facebook/musicgen-*; a
model saved by transformers may differ in every EnCodec field. This script
builds one tiny MusicgenForConditionalGeneration per variant below (one or
two LSTM layers, one or two residual layers, other kernel sizes and
upsampling ratios, dilation growth 3, a conv shortcut, causal convolutions
with constant padding), saves each with save_pretrained plus the tokenizer
of make_musicgen_fixtures.py, and records what transformers' EnCodec makes
of fixed codes and of a fixed signal:

  OUT/encodec-variants/NAME/        config.json, generation_config.json,
                                    model.safetensors, tokenizer.json
  OUT/encodec-variants/reference.safetensors
      NAME.codes (i64 [1, 4, F])     codes to decode
      NAME.audio                     their decode [1, 1, F * hop]
      NAME.input                     a signal [1, 1, N], N not a whole
                                     number of frames
      NAME.input_codes (i64)         its encode [1, 4, F']

Usage (versions pinned in tools/requirements-musicgen.txt):
  python tools/make_encodec_variants.py --out tests/data
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

import transformers
from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                          MusicgenForConditionalGeneration, T5Config)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_musicgen_fixtures import make_tokenizer  # noqa: E402

CODEBOOK_SIZE = 64
QUANTIZERS = 4

# name -> EnCodec fields that differ from the base below
VARIANTS = {
    "lstm1-res1-k5": dict(num_lstm_layers=1, num_residual_layers=1, kernel_size=5,
                          last_kernel_size=5),
    "lstm2-res2-k3": dict(num_lstm_layers=2, num_residual_layers=2, kernel_size=3,
                          residual_kernel_size=5, dilation_growth_rate=3, num_filters=2,
                          upsampling_ratios=[4, 4, 5, 8]),
    "lstm1-res2-shortcut": dict(num_lstm_layers=1, num_residual_layers=2, last_kernel_size=3,
                                use_conv_shortcut=True, upsampling_ratios=[8, 8, 5]),
    "lstm2-causal": dict(num_lstm_layers=2, use_causal_conv=True, pad_mode="constant",
                         kernel_size=5, upsampling_ratios=[5, 4, 2]),
}


def encodec_config(fields):
    base = dict(
        sampling_rate=32000, audio_channels=1, num_filters=2, hidden_size=8,
        codebook_size=CODEBOOK_SIZE, codebook_dim=8, upsampling_ratios=[8, 5, 4, 4],
        num_lstm_layers=2, num_residual_layers=1, compress=2, kernel_size=7,
        last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2,
        norm_type="weight_norm", pad_mode="reflect", use_causal_conv=False,
        use_conv_shortcut=False, normalize=False, chunk_length_s=None, overlap=None,
        trim_right_ratio=1.0,
    )
    base.update(fields)
    hop = 1
    for r in base["upsampling_ratios"]:
        hop *= r
    frame_rate = -(-base["sampling_rate"] // hop)
    # the bandwidth that gives QUANTIZERS codebooks of 6 bits
    base["target_bandwidths"] = [QUANTIZERS * frame_rate * 6 / 1000.0]
    return EncodecConfig(**base), hop


def model_config(vocab, audio):
    text = T5Config(
        vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="relu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE, max_position_embeddings=256, num_hidden_layers=1,
        ffn_dim=32, num_attention_heads=2, hidden_size=16, dropout=0.0,
        activation_function="gelu", num_codebooks=QUANTIZERS, audio_channels=1,
        pad_token_id=CODEBOOK_SIZE, bos_token_id=CODEBOOK_SIZE,
        decoder_start_token_id=CODEBOOK_SIZE,
    )
    return MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tok = make_tokenizer()
    gen = torch.Generator().manual_seed(11)
    root = os.path.join(args.out, "encodec-variants")
    ref = {}
    for name, fields in VARIANTS.items():
        torch.manual_seed(3)
        audio_cfg, hop = encodec_config(fields)
        model = MusicgenForConditionalGeneration(model_config(tok.get_vocab_size(), audio_cfg))
        model.eval()
        with torch.no_grad():
            for layer in model.audio_encoder.quantizer.layers:
                cb = layer.codebook
                cb.embed.copy_(torch.randn(cb.embed.shape, generator=gen))
                cb.embed_avg.copy_(cb.embed)
        folder = os.path.join(root, name)
        model.save_pretrained(folder, safe_serialization=True)
        tok.save(os.path.join(folder, "tokenizer.json"))
        codec = model.audio_encoder
        with torch.no_grad():
            codes = torch.randint(0, CODEBOOK_SIZE, (1, QUANTIZERS, 7), generator=gen)
            ref[f"{name}.codes"] = codes
            ref[f"{name}.audio"] = codec.decode(codes[None], [None]).audio_values
            n = hop * 6 + 123
            x = 0.3 * torch.sin(torch.arange(n) * 0.05) + 0.05 * torch.randn(n, generator=gen)
            x = x.reshape(1, 1, n)
            ref[f"{name}.input"] = x
            ref[f"{name}.input_codes"] = codec.encode(x).audio_codes[0]
        print(name, "hop", hop, "audio", tuple(ref[f"{name}.audio"].shape))
    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(root, "reference.safetensors"),
              metadata={"variants": json.dumps(list(VARIANTS)), "torch": torch.__version__,
                        "transformers": transformers.__version__})


if __name__ == "__main__":
    main()
