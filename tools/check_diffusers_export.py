#!/usr/bin/env python3
"""Loads a `ragafusion train` export in diffusers and records what it computes.

Checks, on a LoRA run's OUT/final:
  1. StableDiffusionPipeline.from_pretrained(EXPORT) loads every component
     (the merged UNet included) and samples a 64 x 64 image in 2 PNDM steps
     without NaN;
  2. the base pipeline with the exported adapters applied through
     diffusers' own `load_lora_weights(EXPORT, weight_name=
     "pytorch_lora_weights.safetensors")` gives the same UNet output as the
     merged UNet (max difference printed; must be <= 1e-5);
  3. the UNet output on the fixed inputs of the tiny checkpoint's reference
     file (unet.sample / unet.timesteps / unet.context) is saved, so the
     Rust test can check the same weights give the same numbers there.

Usage (from the repository root, with tools/requirements-sd.txt + peft):
  ragafusion train --data D --out R --model tests/data/sd-tiny --lora \
      --max-steps 3 --batch-size 2 --crop-px 64 --learning-rate 1e-2 \
      --lr-warmup-steps 0 --seed 7
  python tools/check_diffusers_export.py --export R/final \
      --base tests/data/sd-tiny \
      --inputs tests/data/sd-tiny-reference.safetensors \
      --out tests/data/train-export/diffusers-reference.safetensors

The committed fixture tests/data/train-export/ holds that export's unet/,
pytorch_lora_weights.safetensors and lora_config.json (the other
components are tests/data/sd-tiny's, copied unchanged by the export) and
this script's output.

Reference tensors (f32):
  export.unet.out   the exported (merged) UNet on the reference inputs
  lora.unet.out     the base UNet + diffusers-loaded adapters, same inputs
  export.txt2img    the 2-step 64 x 64 image (NCHW, in [0, 1])
"""

import argparse

import torch
from diffusers import PNDMScheduler, StableDiffusionPipeline
from safetensors.torch import load_file, save_file


def load(path):
    return StableDiffusionPipeline.from_pretrained(
        path, safety_checker=None, requires_safety_checker=False
    )


def unet_out(pipe, inputs):
    with torch.no_grad():
        return pipe.unet(
            inputs["unet.sample"],
            inputs["unet.timesteps"],
            encoder_hidden_states=inputs["unet.context"],
        ).sample


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="OUT/final of a LoRA run")
    ap.add_argument("--base", required=True, help="the run's --model")
    ap.add_argument("--inputs", required=True, help="sd-tiny-reference.safetensors")
    ap.add_argument("--out", required=True, help="reference file to write")
    a = ap.parse_args()

    torch.manual_seed(0)
    inputs = load_file(a.inputs)
    exported = load(a.export)
    exported.scheduler = PNDMScheduler.from_config(exported.scheduler.config)
    out_export = unet_out(exported, inputs)
    image = exported(
        "Todi raga",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert torch.isfinite(image).all(), "the exported pipeline produced NaN"

    base = load(a.base)
    out_base = unet_out(base, inputs)
    base.load_lora_weights(a.export, weight_name="pytorch_lora_weights.safetensors")
    out_lora = unet_out(base, inputs)

    d_lora = (out_lora - out_export).abs().max().item()
    d_base = (out_base - out_export).abs().max().item()
    print(f"merged export vs base + diffusers-loaded LoRA: max diff {d_lora:.3e}")
    print(f"merged export vs base (how far training moved it): max diff {d_base:.3e}")
    assert d_lora <= 1e-5, "diffusers reads the adapters differently"
    assert d_base > 1e-4, "the adapters did not change the UNet"

    save_file(
        {
            "export.unet.out": out_export.contiguous(),
            "lora.unet.out": out_lora.contiguous(),
            "export.txt2img": image.float().contiguous(),
        },
        a.out,
    )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
