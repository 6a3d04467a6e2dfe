#!/usr/bin/env python3
"""Tiny random Stable Diffusion checkpoint + diffusers reference outputs.

Builds a Stable Diffusion 1.5-architecture pipeline with tiny random weights
(UNet with cross-attention down / up blocks and a cross-attention mid block,
an 8x VAE, a CLIP text encoder, a CLIP BPE tokenizer cut to 1000 entries and
riffusion's PNDM scheduler config) and saves it in the diffusers folder
layout with save_pretrained, the way real checkpoints are laid out:

  OUT/sd-tiny/                model_index.json, unet/, vae/, text_encoder/,
                              tokenizer/, scheduler/ (safetensors, f32)
  OUT/sd-tiny/text_encoder/pytorch_model.bin
                              the same text encoder as a PyTorch pickle with
                              transformers 4's key names (the format of
                              riffusion-model-v1's main branch);
                              loaders prefer safetensors, the tests read both
  OUT/sd-tiny/tokenizer/vocab.json, merges.txt
                              the 2022 tokenizer layout, beside tokenizer.json
  OUT/sd-tiny-reference.safetensors
                              what diffusers / transformers compute with it

Reference tensors (all f32 unless noted):
  tokens.N (i64 [77])         token ids of PROMPTS[N]
  text.embeddings             CLIP last hidden state of PROMPTS, [P, 77, 32]
  unet.sample / .timesteps / .context / .out
                              one UNet call with a timestep per sample
  vae.latents / vae.decoded   VAE decode of latents * (1 / 0.18215)
  vae.image / vae.mean / vae.std
                              VAE encode of an image in [-1, 1]
  txt2img.init                the initial latents (unit variance) of every
                              sampling loop, [1, 4, 8, 8]
  txt2img.SCHED.latents / .image
                              StableDiffusionPipeline, PROMPTS[1] against
                              the empty negative prompt, guidance 7.5,
                              10 steps, 64x64, from txt2img.init, with
                              SCHED in ddim, pndm, euler-a, dpmpp-2m
  txt2img.euler-a.noise.K     the noise euler ancestral drew at step K
  img2img.image / .noise.K / .latents / .out
                              StableDiffusionImg2ImgPipeline (PNDM, strength
                              0.6, 10 steps) with the noise it drew, K in
                              call order: 0 the VAE posterior sample, 1 the
                              noise added to the init latents
  interp.a / .b / .alpha / .latents / .embeddings / .out
                              one interpolation step: slerp of two noises,
                              lerp of two prompts' embeddings, then the
                              txt2img loop (DDIM) from them

Usage (versions pinned in tools/requirements-sd.txt; the CLIP merges come
from the open-clip-torch wheel, `pip download --no-deps open-clip-torch`):
  python tools/make_sd_fixtures.py --open-clip-wheel WHEEL --out tests/data
"""
import argparse
import gzip
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, PNDMScheduler,
                       StableDiffusionImg2ImgPipeline, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

PROMPTS = [
    "a photo of a cat",
    "kalyani raga, adi tala, alapana, sung by a female vocalist",
    "",
    " ".join(["shankarabharanam raga with violin and mridangam"] * 12),
]
VOCAB_SIZE = 1000

# riffusion-model-v1's scheduler/scheduler_config.json, as published (2022):
# keys that later diffusers versions added are absent on purpose, so every
# scheduler falls back to its own defaults, as it does for that checkpoint.
RIFFUSION_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.9.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def clip_bpe(wheel, tmp):
    """vocab.json + merges.txt of CLIP's BPE cut to VOCAB_SIZE entries."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz"))
        lines = gzip.decompress(z.read(name)).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    # byte-to-unicode table of GPT-2 / CLIP
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    n_merges = VOCAB_SIZE - 2 * 256 - 2
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges[:n_merges]]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE
    vpath = os.path.join(tmp, "vocab.json")
    mpath = os.path.join(tmp, "merges.txt")
    with open(vpath, "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(mpath, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges[:n_merges]:
            f.write(f"{a} {b}\n")
    return vpath, mpath


def perturb(model, gen):
    """Random weights everywhere: norms near 1, non-zero biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(fan_in))


def build(out_dir, wheel):
    gen = torch.Generator().manual_seed(2026)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 16, 32), layers_per_block=2, cross_attention_dim=32,
        attention_head_dim=4, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4,
        norm_num_groups=8, sample_size=64,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        layer_norm_eps=1e-5, bos_token_id=VOCAB_SIZE - 2, eos_token_id=VOCAB_SIZE - 1,
        pad_token_id=VOCAB_SIZE - 1, projection_dim=32,
    ))
    for m in (unet, vae, text_encoder):
        perturb(m, gen)
        m.eval()
    bpe_dir = tempfile.mkdtemp()
    vpath, mpath = clip_bpe(wheel, bpe_dir)
    tokenizer = CLIPTokenizer(vpath, mpath, pad_token="<|endoftext|>", model_max_length=77)
    scheduler = PNDMScheduler.from_config(RIFFUSION_SCHEDULER)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    path = os.path.join(out_dir, "sd-tiny")
    shutil.rmtree(path, ignore_errors=True)
    pipe.save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(RIFFUSION_SCHEDULER, f, indent=2)
    # the key layout transformers 4 wrote (riffusion-model-v1's main branch):
    # a "text_model." prefix and the position_ids buffer
    legacy = {"text_model." + k: v for k, v in text_encoder.state_dict().items()}
    legacy["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    torch.save(legacy, os.path.join(path, "text_encoder", "pytorch_model.bin"))
    # the 2022 layout: vocab.json + merges.txt beside (or instead of) tokenizer.json
    shutil.copy(vpath, os.path.join(path, "tokenizer", "vocab.json"))
    shutil.copy(mpath, os.path.join(path, "tokenizer", "merges.txt"))
    shutil.rmtree(bpe_dir)
    # reload exactly what was written
    return StableDiffusionPipeline.from_pretrained(path, safety_checker=None)


class NoiseTap:
    """Records the tensors diffusers' randn_tensor hands out."""

    def __init__(self, *modules):
        self.modules = modules
        self.drawn = []

    def __enter__(self):
        self.saved = [m.randn_tensor for m in self.modules]

        def tap(*args, **kwargs):
            x = self.saved[0](*args, **kwargs)
            self.drawn.append(x.detach().clone())
            return x
        for m in self.modules:
            m.randn_tensor = tap
        return self

    def __exit__(self, *exc):
        for m, f in zip(self.modules, self.saved):
            m.randn_tensor = f


def scheduler_for(name):
    cfg = dict(RIFFUSION_SCHEDULER)
    if name == "ddim":
        return DDIMScheduler.from_config(cfg)
    if name == "pndm":
        return PNDMScheduler.from_config(cfg)
    if name == "euler-a":
        return EulerAncestralDiscreteScheduler.from_config(cfg)
    if name == "dpmpp-2m":
        return DPMSolverMultistepScheduler.from_config(
            cfg, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(name)


def slerp(t, v0, v1, dot_threshold=0.9995):
    """Spherical interpolation of two noise tensors (riffusion's formula)."""
    a, b = v0.double(), v1.double()
    dot = torch.sum(a * b / (a.norm() * b.norm()))
    if torch.abs(dot) > dot_threshold:
        return ((1 - t) * a + t * b).float()
    theta0 = torch.acos(dot)
    theta = theta0 * t
    s0 = torch.sin(theta0 - theta) / torch.sin(theta0)
    s1 = torch.sin(theta) / torch.sin(theta0)
    return (s0 * a + s1 * b).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--open-clip-wheel", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = build(args.out, args.open_clip_wheel)
    ref = {}
    g = torch.Generator().manual_seed(7)

    with torch.no_grad():
        ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=77,
                             truncation=True, return_tensors="pt").input_ids
        for i in range(len(PROMPTS)):
            ref[f"tokens.{i}"] = ids[i].to(torch.int64)
        ref["text.embeddings"] = pipe.text_encoder(ids)[0]

        sample = torch.randn((2, 4, 8, 8), generator=g)
        timesteps = torch.tensor([981, 41], dtype=torch.int64)
        context = ref["text.embeddings"][:2].clone()
        ref["unet.sample"], ref["unet.timesteps"], ref["unet.context"] = sample, timesteps, context
        ref["unet.out"] = pipe.unet(sample, timesteps, encoder_hidden_states=context).sample

        latents = torch.randn((1, 4, 8, 8), generator=g)
        ref["vae.latents"] = latents
        ref["vae.decoded"] = pipe.vae.decode(latents / 0.18215).sample
        image = torch.rand((1, 3, 64, 64), generator=g) * 2 - 1
        dist = pipe.vae.encode(image).latent_dist
        ref["vae.image"], ref["vae.mean"], ref["vae.std"] = image, dist.mean, dist.std

        init = torch.randn((1, 4, 8, 8), generator=g)
        ref["txt2img.init"] = init
        import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea
        for name in ("ddim", "pndm", "euler-a", "dpmpp-2m"):
            pipe.scheduler = scheduler_for(name)
            with NoiseTap(ea) as tap:
                out = pipe(PROMPTS[1], height=64, width=64, num_inference_steps=10,
                           guidance_scale=7.5, latents=init.clone(), output_type="latent")
            ref[f"txt2img.{name}.latents"] = out.images
            ref[f"txt2img.{name}.image"] = pipe.vae.decode(out.images / 0.18215).sample
            if name == "euler-a":
                for k, x in enumerate(tap.drawn):
                    ref[f"txt2img.euler-a.noise.{k}"] = x

        import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as i2i
        import diffusers.models.autoencoders.vae as vae_mod
        img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        img2img.scheduler = scheduler_for("pndm")
        start = (ref["txt2img.ddim.image"].clamp(-1, 1) + 1) / 2
        with NoiseTap(i2i, vae_mod) as tap:
            out = img2img(PROMPTS[0], image=start, strength=0.6, num_inference_steps=10,
                          guidance_scale=7.5, output_type="latent",
                          generator=torch.Generator().manual_seed(3))
        ref["img2img.image"] = start * 2 - 1
        for k, x in enumerate(tap.drawn):
            ref[f"img2img.noise.{k}"] = x
        ref["img2img.latents"] = out.images
        ref["img2img.out"] = pipe.vae.decode(out.images / 0.18215).sample

        a = torch.randn((1, 4, 8, 8), generator=g)
        b = torch.randn((1, 4, 8, 8), generator=g)
        alpha = 0.3
        ea_, _ = pipe.encode_prompt(PROMPTS[0], "cpu", 1, False)
        eb_, _ = pipe.encode_prompt(PROMPTS[1], "cpu", 1, False)
        uncond, _ = pipe.encode_prompt("", "cpu", 1, False)
        emb = (1 - alpha) * ea_ + alpha * eb_
        lat = slerp(alpha, a, b)
        pipe.scheduler = scheduler_for("ddim")
        out = pipe(prompt_embeds=emb, negative_prompt_embeds=uncond, height=64, width=64,
                   num_inference_steps=10, guidance_scale=7.5, latents=lat.clone(),
                   output_type="latent")
        ref["interp.a"], ref["interp.b"] = a, b
        ref["interp.alpha"] = torch.tensor([alpha], dtype=torch.float32)
        ref["interp.latents"], ref["interp.embeddings"] = lat, emb
        ref["interp.out"] = out.images

    ref = {k: v.contiguous() for k, v in ref.items()}
    meta = {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "prompts": json.dumps(PROMPTS)}
    save_file(ref, os.path.join(args.out, "sd-tiny-reference.safetensors"), metadata=meta)
    print(f"{len(ref)} reference tensors; torch {torch.__version__}, "
          f"diffusers {diffusers.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
