#!/usr/bin/env python3
"""Golden fixtures from riffusion's own spectrogram code.

For each CC BY recording in the shared data folder this script:
  1. builds a 5.12 s mono clip (the recording tiled, 16-bit WAV) into
     tests/data/clips/NAME_5120ms.wav;
  2. runs riffusion's SpectrogramImageConverter (audio -> image) and saves
     the PNG with its EXIF exactly as riffusion's CLI does, into
     tests/data/riffusion/NAME_5120ms.png;
  3. runs riffusion's image -> audio (InverseMelScale + 32 Griffin-Lim
     iterations, torch seed 0) and saves the result as FLAC into
     tests/data/riffusion/NAME_5120ms_reconstructed.flac;
  4. times audio -> image and image -> audio on the vignesh clip (median of
     3, CPU) into tests/data/riffusion/timings.json.
With --ragafusion BIN it also converts the clips with our binary and
records what riffusion's reader (PIL + SpectrogramParams.from_exif) gets
from our PNGs into tests/data/riffusion/reads_ours.json.

riffusion calls torchaudio's InverseMelScale with SGD arguments that
torchaudio >= 2.1 removed; the script drops those arguments, which is what
running riffusion on a current torchaudio requires (the transform is then a
least-squares solve).

Usage (versions pinned in tools/requirements-riffusion.txt):
  python tools/make_riffusion_fixtures.py --riffusion-src DIR \
      --shared ../shared/data/carnatic-cc-by --out tests/data \
      [--ragafusion target/release/ragafusion]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

CLIP_SAMPLES = 225792  # 5.12 s at 44.1 kHz
RECORDINGS = ["vignesh", "carnatic", "mridangam", "violin-B3", "flute-A4"]


def patch_inverse_mel(torchaudio):
    original = torchaudio.transforms.InverseMelScale

    class Compat(original):
        def __init__(self, *args, **kwargs):
            for k in ("max_iter", "tolerance_loss", "tolerance_change", "sgdargs"):
                kwargs.pop(k, None)
            super().__init__(*args, **kwargs)

    torchaudio.transforms.InverseMelScale = Compat


def median_time(fn, repeats=3):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--riffusion-src", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ragafusion")
    args = ap.parse_args()

    sys.path.insert(0, args.riffusion_src)
    import torch
    import torchaudio

    patch_inverse_mel(torchaudio)
    import pydub
    from PIL import Image
    from riffusion.spectrogram_image_converter import SpectrogramImageConverter
    from riffusion.spectrogram_params import SpectrogramParams

    torch.set_num_threads(os.cpu_count())
    clips_dir = os.path.join(args.out, "clips")
    riff_dir = os.path.join(args.out, "riffusion")
    os.makedirs(clips_dir, exist_ok=True)
    os.makedirs(riff_dir, exist_ok=True)

    params = SpectrogramParams()
    converter = SpectrogramImageConverter(params=params, device="cpu")
    timings = {}
    for name in RECORDINGS:
        data, rate = sf.read(os.path.join(args.shared, f"{name}.wav"), dtype="int16")
        assert rate == 44100, rate
        if data.ndim > 1:
            data = data[:, 0]
        reps = -(-CLIP_SAMPLES // len(data))
        clip = np.tile(data, reps)[:CLIP_SAMPLES]
        clip_path = os.path.join(clips_dir, f"{name}_5120ms.wav")
        sf.write(clip_path, clip, rate, subtype="PCM_16")

        segment = pydub.AudioSegment.from_file(clip_path)
        t_fwd, image = median_time(lambda: converter.spectrogram_image_from_audio(segment))
        png_path = os.path.join(riff_dir, f"{name}_5120ms.png")
        image.save(png_path, exif=image.getexif(), format="PNG")

        loaded = Image.open(png_path)
        read_params = SpectrogramParams.from_exif(exif=loaded.getexif())
        inv = SpectrogramImageConverter(params=read_params, device="cpu")

        def invert():
            torch.manual_seed(0)
            return inv.audio_from_spectrogram_image(loaded)

        repeats = 3 if name == "vignesh" else 1
        t_inv, recon = median_time(invert, repeats)
        samples = np.array(recon.get_array_of_samples(), dtype=np.int16)
        sf.write(
            os.path.join(riff_dir, f"{name}_5120ms_reconstructed.flac"),
            samples,
            recon.frame_rate,
            subtype="PCM_16",
        )
        if name == "vignesh":
            timings = {
                "clip": f"{name}_5120ms.wav",
                "audio_to_image_s_median_of_3": t_fwd,
                "image_to_audio_s_median_of_3": t_inv,
            }
        print(f"{name}: image {image.size}, forward {t_fwd:.3f} s, inverse {t_inv:.2f} s")

    timings.update(
        {
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torchaudio": torchaudio.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        }
    )
    with open(os.path.join(riff_dir, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
        f.write("\n")

    if args.ragafusion:
        reads = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in RECORDINGS:
                ours = os.path.join(tmp, f"{name}.png")
                subprocess.run(
                    [args.ragafusion, "audio-to-image", os.path.join(clips_dir, f"{name}_5120ms.wav"), ours],
                    check=True,
                )
                img = Image.open(ours)
                exif = img.getexif()
                p = SpectrogramParams.from_exif(exif=exif)
                reads[name] = {
                    "size": list(img.size),
                    "mode": img.mode,
                    "params": {
                        "sample_rate": p.sample_rate,
                        "stereo": p.stereo,
                        "step_size_ms": p.step_size_ms,
                        "window_duration_ms": p.window_duration_ms,
                        "padded_duration_ms": p.padded_duration_ms,
                        "num_frequencies": p.num_frequencies,
                        "min_frequency": p.min_frequency,
                        "max_frequency": p.max_frequency,
                        "power_for_image": p.power_for_image,
                    },
                    "max_value": float(exif[SpectrogramParams.ExifTags.MAX_VALUE.value]),
                }
        with open(os.path.join(riff_dir, "reads_ours.json"), "w") as f:
            json.dump(reads, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
