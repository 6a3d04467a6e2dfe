#!/usr/bin/env python3
"""Spectral centroid of WAV files within a frequency band, per folder:
to compare renders with a model's output on the band the model covers
(the shipped model stops at 4 kHz, the renders do not).

Usage (Python 3 with numpy):
  python3 tools/band_centroid.py [--min-hz 40] [--max-hz 4000] DIR [DIR ...]

Prints, for each folder, the mean and standard deviation over its WAVs of
the centroid of the summed STFT magnitude (2048-point Hann frames, hop
512) between --min-hz and --max-hz, and the full-band centroid.
"""
import argparse
import glob
import os
import wave

import numpy as np


def load(path):
    with wave.open(path) as w:
        n, sr, ch, width = w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()
        if width not in (2, 4):
            raise SystemExit(f"{path}: {8 * width}-bit samples are not supported (16 or 32 bit PCM)")
        data = np.frombuffer(w.readframes(n), dtype=np.int16 if width == 2 else np.int32)
    data = data.astype(float)
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1)
    return data, sr


def centroids(path, lo, hi, n=2048, hop=512):
    x, sr = load(path)
    if len(x) < n:
        raise SystemExit(f"{path}: shorter than one {n}-sample frame")
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=1)).sum(axis=0)
    f = np.fft.rfftfreq(n, 1 / sr)
    band = (f >= lo) & (f <= hi)
    return (mag[band] * f[band]).sum() / mag[band].sum(), (mag * f).sum() / mag.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--min-hz", type=float, default=40.0)
    ap.add_argument("--max-hz", type=float, default=4000.0)
    a = ap.parse_args()
    print(f"| folder | clips | centroid {a.min_hz:.0f}-{a.max_hz:.0f} Hz | full band |")
    print("|---|---|---|---|")
    for d in a.dirs:
        wavs = sorted(glob.glob(os.path.join(d, "*.wav")))
        if not wavs:
            raise SystemExit(f"{d}: no .wav files")
        c = np.array([centroids(w, a.min_hz, a.max_hz) for w in wavs])
        sd = c[:, 0].std(ddof=1) if len(c) > 1 else 0.0
        print(f"| {d} | {len(c)} | {c[:, 0].mean():.0f} +- {sd:.0f} | {c[:, 1].mean():.0f} |")


if __name__ == "__main__":
    main()
