#!/usr/bin/env python3
"""diffusers' side of `ragafusion bench-sd`: the same SD 1.5-architecture
UNet and VAE with random weights, the same loop (batch of two for
classifier-free guidance, PNDM by default), timed the same way.

Prints one JSON object: seconds per step, VAE decode seconds, peak memory
(process RSS on the CPU; torch.cuda.max_memory_allocated on CUDA).

Usage (versions pinned in tools/requirements-sd.txt):
  python tools/bench_diffusers.py [--steps 50] [--device cpu|cuda]
      [--dtype f32|f16] [--width 512] [--height 512] [--sdpa]
"""
import argparse
import json
import resource
import time

import torch
import diffusers
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    args = ap.parse_args()
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    dev = torch.device(args.device)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    # diffusers' defaults for these two classes are the SD 1.x architecture
    # except the UNet's cross-attention width and head count
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    )
    unet = unet.to(dev, dtype).eval()
    vae = vae.to(dev, torch.float32).eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in unet.parameters())

    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    sched.set_timesteps(args.steps)
    g = torch.Generator().manual_seed(1)
    ctx = torch.randn((1, 77, 768), generator=g).to(dev, dtype)
    guided = args.guidance > 1
    context = torch.cat([ctx, ctx]) if guided else ctx
    lat = torch.randn((1, 4, args.height // 8, args.width // 8), generator=g).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    with torch.no_grad():
        t0 = time.perf_counter()
        for t in sched.timesteps:
            inp = torch.cat([lat, lat]) if guided else lat
            out = unet(inp.to(dtype), t, encoder_hidden_states=context).sample.float()
            if guided:
                u, c = out.chunk(2)
                out = u + args.guidance * (c - u)
            lat = sched.step(out, t, lat).prev_sample
        if dev.type == "cuda":
            torch.cuda.synchronize()
        denoise_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = vae.decode(lat / 0.18215).sample
        if dev.type == "cuda":
            torch.cuda.synchronize()
        decode_s = time.perf_counter() - t0
    steps = len(sched.timesteps)
    report = {
        "implementation": f"diffusers {diffusers.__version__}, torch {torch.__version__}",
        "device": args.device, "dtype": args.dtype, "steps": args.steps,
        "width_px": args.width, "height_px": args.height,
        "threads": torch.get_num_threads(),
        "unet_parameters": n_params, "build_s": build_s,
        "denoise_s": denoise_s, "s_per_step": denoise_s / steps,
        "decode_s": decode_s, "total_s": denoise_s + decode_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "image_mean": float(image.float().mean()),
    }
    if dev.type == "cuda":
        report["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
