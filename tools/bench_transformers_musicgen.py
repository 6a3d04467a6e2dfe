#!/usr/bin/env python3
"""transformers' MusicGen generation speed at a published size, random weights.

The counterpart of `ragafusion bench-musicgen`: builds
MusicgenForConditionalGeneration with the small / medium / large decoder,
T5-base and the 32 kHz EnCodec (random weights, no download), then times one
`generate` call of 50 S + 3 new tokens with guidance and top-k 250
sampling. The decoding loop is timed from the first to the last call of the
logits processors (so the text encoder and the EnCodec decode are excluded);
tokens/s counts decoder steps, as `max_new_tokens` does.

Usage (versions pinned in tools/requirements-musicgen.txt):
  python tools/bench_transformers_musicgen.py --size small --seconds 2 \
      [--device cuda] [--dtype float16] [--threads 2]
"""
import argparse
import json
import time

import torch
import transformers
from transformers import (EncodecConfig, LogitsProcessor, LogitsProcessorList, MusicgenConfig,
                          MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config)

SIZES = {"small": (1024, 24, 16, 4096), "medium": (1536, 48, 24, 6144), "large": (2048, 48, 32, 8192)}


class Clock(LogitsProcessor):
    def __init__(self, device):
        self.times = []
        self.device = device

    def __call__(self, input_ids, scores):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small", choices=SIZES)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--text-tokens", type=int, default=16)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    h, layers, heads, ffn = SIZES[args.size]
    config = MusicgenConfig(
        text_encoder=T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12,
                              num_heads=12, feed_forward_proj="relu"),
        audio_encoder=EncodecConfig(sampling_rate=32000, num_filters=64, hidden_size=128,
                                    codebook_size=2048, upsampling_ratios=[8, 5, 4, 4],
                                    target_bandwidths=[2.2], use_conv_shortcut=False,
                                    chunk_length_s=None, overlap=None, normalize=False),
        decoder=MusicgenDecoderConfig(hidden_size=h, num_hidden_layers=layers,
                                      num_attention_heads=heads, ffn_dim=ffn),
    )
    t0 = time.perf_counter()
    model = MusicgenForConditionalGeneration(config).eval()
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype))
    build_s = time.perf_counter() - t0
    steps = round(args.seconds * 50) + 3
    ids = (torch.arange(args.text_tokens) * 7919 + 3) % 32128
    ids = ids.reshape(1, -1).to(args.device)
    clock = Clock(args.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        audio = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=steps, do_sample=True, top_k=250,
                               guidance_scale=args.guidance,
                               logits_processor=LogitsProcessorList([clock]))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    total_s = time.perf_counter() - t0
    loop_s = clock.times[-1] - clock.times[0]
    # the first processor call follows the first step: scale to all steps
    tokens_per_s = (len(clock.times) - 1) / loop_s
    n_dec = sum(p.numel() for p in model.decoder.parameters())
    report = {
        "decoder_parameters": n_dec, "processor_calls": len(clock.times),
        "implementation": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "size": args.size, "device": args.device, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "decoder_steps": steps,
        "build_s": build_s, "generate_s": total_s, "tokens_per_s": tokens_per_s,
        "ms_per_step": 1000.0 / tokens_per_s, "audio_s": audio.shape[-1] / 32000,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
