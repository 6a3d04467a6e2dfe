#!/usr/bin/env python3
"""librosa's pyin on the CC BY clips, for tests/pitch_librosa.rs.

Runs librosa.pyin (fmin 60, fmax 1500, frame 4096 at 44.1 kHz = 93 ms,
hop 441 = 10 ms, other parameters at librosa's defaults) on each
tests/data/clips/NAME_5120ms.wav and writes tests/data/pyin/NAME.json with
f0 (Hz, null when unvoiced) and the voiced flags.

Versions: librosa==0.11.0 on top of tools/requirements-riffusion.txt.
Usage: python tools/make_pyin_fixture.py tests/data
"""
import json
import os
import sys

import librosa
import numpy as np
import soundfile as sf

NAMES = ["vignesh", "carnatic", "mridangam", "violin-B3", "flute-A4"]


def main():
    root = sys.argv[1]
    out_dir = os.path.join(root, "pyin")
    os.makedirs(out_dir, exist_ok=True)
    for name in NAMES:
        y, sr = sf.read(os.path.join(root, "clips", f"{name}_5120ms.wav"), dtype="float32")
        f0, voiced, _ = librosa.pyin(y, fmin=60, fmax=1500, sr=sr, frame_length=4096, hop_length=441)
        doc = {
            "librosa": librosa.__version__,
            "sample_rate_hz": sr,
            "hop_length": 441,
            "frame_length": 4096,
            "f0_hz": [None if np.isnan(v) else round(float(v), 3) for v in f0],
            "voiced": [bool(v) for v in voiced],
        }
        with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
            json.dump(doc, f)
            f.write("\n")
        print(name, int(np.sum(voiced)), "voiced of", len(voiced))


if __name__ == "__main__":
    main()
