#!/usr/bin/env python3
"""A long stereo test recording for measuring `prepare`'s memory.

Writes OUT (16-bit, 44.1 kHz, stereo) of the given length: a stepping tone
with one harmonic and light noise, written a minute at a time.

Usage: python tools/make_long_recording.py OUT.wav [--hours 2]
"""
import argparse

import numpy as np
import soundfile as sf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args()
    rate = 44100
    rng = np.random.default_rng(0)
    with sf.SoundFile(args.out, "w", rate, 2, "PCM_16") as f:
        for m in range(int(args.hours * 60)):
            t = np.arange(60 * rate) / rate + m * 60
            f0 = 150 * 2 ** ((np.floor(t * 2) % 12) / 12)
            ph = 2 * np.pi * np.cumsum(f0) / rate
            x = 0.3 * np.sin(ph) + 0.1 * np.sin(2 * ph) + 0.01 * rng.standard_normal(len(t))
            f.write(np.stack([x, 0.8 * x], axis=1).astype(np.float32))


if __name__ == "__main__":
    main()
