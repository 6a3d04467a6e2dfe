#!/usr/bin/env python3
"""Seed corpora of the fuzz targets in fuzz/ (fuzz/seeds/TARGET/NAME).

Each seed is one valid input of the kind the target's first byte selects,
kept small so that libFuzzer mutates quickly: short WAV, MP3, OGG and a
truncated FLAC from tests/data/formats; a spectrogram PNG with riffusion's
EXIF made by `ragafusion audio-to-image`; tiny safetensors and PyTorch
`.bin` checkpoints; the tiny pipeline's config files and a ragafusion.json;
the example experiment, metadata CSV / JSON lines and captions.

Usage (torch and safetensors as pinned in tools/requirements-musicgen.txt;
a built ragafusion in target/release or target/debug):
  python tools/make_fuzz_seeds.py
"""
import io
import os
import shutil
import struct
import subprocess
import tempfile
import wave

import torch
from safetensors.torch import save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, selector, data):
    """Writes a seed; `selector` is the kind-picking first byte of targets
    that have one (None for png_exif, which reads the bytes whole)."""
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write((bytes([selector]) if selector is not None else b"") + data)


def small_wav(rate=8000, n=400):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", (i * 97) % 4000 - 2000) for i in range(n)))
    return buf.getvalue()


def binary():
    for profile in ("release", "debug"):
        b = os.path.join(ROOT, "target", profile, "ragafusion")
        if os.path.exists(b):
            return b
    raise SystemExit("build ragafusion first (cargo build --release)")


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    fmt = os.path.join(ROOT, "tests", "data", "formats", "tone_48k_stereo")
    put("audio", "short.wav", 0, small_wav())
    # Opus comes in Ogg: the `ogg` hint (selector 3) serves it too
    for sel, ext, limit in (
        (1, "mp3", None), (2, "flac", 4096), (3, "ogg", None), (3, "opus", None),
    ):
        with open(f"{fmt}.{ext}", "rb") as f:
            data = f.read()
        put("audio", f"tone.{ext}", sel, data[:limit] if limit else data)

    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "c.wav")
        with open(wav, "wb") as f:
            f.write(small_wav(44100, 2205))
        png = os.path.join(tmp, "c.png")
        subprocess.run([binary(), "audio-to-image", wav, png], check=True,
                       stderr=subprocess.DEVNULL)
        with open(png, "rb") as f:
            put("png_exif", "riffusion.png", None, f.read())

    tensors = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "a.bias": torch.zeros(2, dtype=torch.float16)}
    put("checkpoints", "tiny.safetensors", 0, save(tensors))
    buf = io.BytesIO()
    torch.save(tensors, buf)
    put("checkpoints", "tiny.bin", 1, buf.getvalue())
    sd = os.path.join(ROOT, "tests", "data", "sd-tiny")
    mg = os.path.join(ROOT, "tests", "data", "musicgen-tiny", "config.json")
    configs = [os.path.join(sd, p) for p in
               ("unet/config.json", "vae/config.json", "text_encoder/config.json",
                "scheduler/scheduler_config.json")] + [mg]
    for i, path in enumerate(configs):
        with open(path, "rb") as f:
            put("checkpoints", f"config{i}.json", 2, f.read())
    rf = os.path.join(ROOT, "checkpoints", "ragafusion-carnatic-v1", "ragafusion.json")
    if os.path.exists(rf):
        with open(rf, "rb") as f:
            put("checkpoints", "ragafusion.json", 3, f.read())

    with open(os.path.join(ROOT, "docs", "experiments", "example.toml"), "rb") as f:
        put("text_inputs", "experiment.toml", 0, f.read())
    put("text_inputs", "metadata.csv", 1,
        b"file,raga,tala,composer,artist,segment,start_s,end_s\n"
        b"a.wav,Kalyani,Adi,Thyagaraja,,kriti,0.5,3.0\nb.wav,Thodi,,,,alapana,,\n")
    put("text_inputs", "metadata.jsonl", 2,
        b'{"file": "a.wav", "raga": "Kalyani", "start_s": 1.5}\n{"file": "b.wav", "raga": "Todi"}\n')
    put("text_inputs", "caption.txt", 3,
        "kalyani raga, adi tala, shruti 146.8 Hz, alapana on the veena".encode())
    put("text_inputs", "caption-tamil.txt", 3, "கல்யாணி ராகம், ஆதி தாளம்".encode())
    for target in sorted(os.listdir(SEEDS)):
        names = sorted(os.listdir(os.path.join(SEEDS, target)))
        print(target, names)


if __name__ == "__main__":
    main()
