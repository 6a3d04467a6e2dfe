#!/usr/bin/env python3
"""Small encoded audio files for the decoder tests (tests/data/formats).

A 440 Hz tone (left) and 660 Hz tone (right), 0.5 s, at 48 kHz stereo,
written as MP3, OGG Vorbis, FLAC and 24-bit WAV with libsndfile (through
soundfile, version pinned in tools/requirements-riffusion.txt).

Usage: python tools/make_format_fixtures.py tests/data/formats
"""
import os
import sys

import numpy as np
import soundfile as sf

RATE = 48000


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    t = np.arange(RATE // 2) / RATE
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(os.path.join(out, "tone_48k_stereo.mp3"), stereo, RATE, format="MP3")
    sf.write(os.path.join(out, "tone_48k_stereo.ogg"), stereo, RATE, format="OGG", subtype="VORBIS")
    sf.write(os.path.join(out, "tone_48k_stereo.flac"), stereo, RATE, format="FLAC", subtype="PCM_16")
    sf.write(os.path.join(out, "tone_48k_stereo.wav"), stereo, RATE, format="WAV", subtype="PCM_24")


if __name__ == "__main__":
    main()
