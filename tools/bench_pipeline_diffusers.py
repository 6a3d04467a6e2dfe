#!/usr/bin/env python3
"""diffusers' side of scripts/bench_default_model.sh, and the check that
diffusers loads a ragafusion pipeline folder as it is.

Loads MODEL with StableDiffusionPipeline.from_pretrained (no safety
checker; torch f32 on the CPU), swaps in the sampler ragafusion uses, and
times text-to-image for one clip the way `ragafusion generate` reports it:
loading, then encoding the prompt + denoising + VAE decoding. It checks
that the image is finite and not constant, saves it as a PNG, and prints
one JSON object.

Usage (versions pinned in tools/requirements-sd.txt):
  python tools/bench_pipeline_diffusers.py --model checkpoints/ragafusion-carnatic-v1 \
      [--prompt "Kalyani raga alapana, violin"] [--steps 20] [--scheduler dpmpp-2m]
      [--guidance 7] [--width 512] [--height 128] [--repeats 3] [--threads 2]
      [--png out.png]
"""
import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", default="Kalyani raga alapana, violin")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--scheduler", default="dpmpp-2m",
                    choices=["ddim", "pndm", "euler-a", "dpmpp-2m"])
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()

    t_import = time.perf_counter()
    import numpy as np
    import torch
    import diffusers
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, PNDMScheduler,
                           StableDiffusionPipeline)
    import_s = time.perf_counter() - t_import
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, safety_checker=None, requires_safety_checker=False,
        torch_dtype=torch.float32)
    kind = {"ddim": DDIMScheduler, "pndm": PNDMScheduler,
            "euler-a": EulerAncestralDiscreteScheduler,
            "dpmpp-2m": DPMSolverMultistepScheduler}[args.scheduler]
    pipe.scheduler = kind.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0

    times = []
    image = None
    for r in range(args.repeats):
        g = torch.Generator().manual_seed(args.seed + r)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = pipe(args.prompt, height=args.height, width=args.width,
                       num_inference_steps=args.steps, guidance_scale=args.guidance,
                       generator=g, output_type="np")
        times.append(time.perf_counter() - t0)
        if image is None:
            image = out.images[0]
    arr = np.asarray(image)
    finite = bool(np.isfinite(arr).all())
    spread = float(arr.max() - arr.min())
    if not finite or spread < 1e-3:
        raise SystemExit(f"diffusers made an unusable image: finite={finite}, spread={spread}")
    if args.png:
        from PIL import Image
        Image.fromarray((arr * 255).round().astype("uint8")).save(args.png)
    print(json.dumps({
        "model": os.path.abspath(args.model),
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": args.guidance,
        "image_shape": list(arr.shape),
        "import_s": import_s,
        "load_s": load_s,
        "text_to_image_s": times,
        "text_to_image_median_s": sorted(times)[len(times) // 2],
    }))


if __name__ == "__main__":
    main()
