#!/usr/bin/env python3
"""Small encoded audio files for the decoder tests (tests/data/formats).

A 440 Hz tone (left) and 660 Hz tone (right), 0.5 s, at 48 kHz stereo,
written the way real tools write it:

- libsndfile (through soundfile, pinned in tools/requirements-riffusion.txt):
  MP3, OGG Vorbis, FLAC, 24-bit WAV, 32-bit float WAV, 8-bit WAV, AIFF;
- ffmpeg (Debian's, `tools/install-format-tools.sh`): AAC and ALAC in
  .m4a, Opus in .opus, and libopus's decode of that .opus (its first
  0.25 s, 16-bit) as the reference for the Opus decoder;
- sox (Debian's): 16-bit AIFF;
- a DAW-style 24-bit WAV: soundfile's PCM_24 data behind the chunks DAWs
  add (JUNK, bext, LGWV) with a cue chunk after the data, and a data chunk
  whose length is not a whole number of frames (4 stray bytes), as some
  exporters leave it;
- the AAC .m4a cut in half (a truncated download).

Usage: python tools/make_format_fixtures.py tests/data/formats
"""
import os
import struct
import subprocess
import sys

import numpy as np
import soundfile as sf

RATE = 48000


def chunk(tag, payload):
    pad = b"\0" if len(payload) % 2 else b""
    return tag + struct.pack("<I", len(payload)) + payload + pad


def daw_wav(src, dst):
    """Re-wraps a PCM_24 WAV's fmt and data as a DAW export would."""
    data = open(src, "rb").read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos, chunks = 12, {}
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunks[tag] = data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size % 2)
    fmt, pcm = chunks[b"fmt "], chunks[b"data"]
    bext = b"ragafusion fixture".ljust(256, b"\0") + b"\0" * (602 - 256)
    ragged = pcm + b"\x01\x02\x03\x04"  # not a whole 6-byte frame
    cue = struct.pack("<I", 1) + struct.pack("<II4sIII", 1, 0, b"data", 0, 0, 12000)
    body = (
        b"WAVE"
        + chunk(b"JUNK", b"\0" * 28)
        + chunk(b"bext", bext)
        + chunk(b"fmt ", fmt)
        + chunk(b"LGWV", b"\x00" * 12)
        + chunk(b"data", ragged)
        + chunk(b"cue ", cue)
    )
    open(dst, "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    path = lambda ext: os.path.join(out, f"tone_48k_stereo.{ext}")
    t = np.arange(RATE // 2) / RATE
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(path("mp3"), stereo, RATE, format="MP3")
    sf.write(path("ogg"), stereo, RATE, format="OGG", subtype="VORBIS")
    sf.write(path("flac"), stereo, RATE, format="FLAC", subtype="PCM_16")
    sf.write(path("wav"), stereo, RATE, format="WAV", subtype="PCM_24")
    sf.write(path("f32.wav"), stereo, RATE, format="WAV", subtype="FLOAT")
    sf.write(path("u8.wav"), stereo, RATE, format="WAV", subtype="PCM_U8")
    sf.write(path("aiff"), stereo, RATE, format="AIFF", subtype="PCM_24")
    daw_wav(path("wav"), path("daw.wav"))
    ff = ["ffmpeg", "-loglevel", "error", "-y", "-i", path("wav")]
    subprocess.run(ff + ["-c:a", "aac", "-b:a", "256k", path("m4a")], check=True)
    subprocess.run(ff + ["-c:a", "alac", path("alac.m4a")], check=True)
    subprocess.run(ff + ["-c:a", "libopus", "-b:a", "64k", path("opus")], check=True)
    # libopus's own decode of the first 0.25 s: the reference for ours
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-c:a", "libopus", "-i", path("opus"),
         "-t", "0.25", "-c:a", "pcm_s16le", path("opus.libopus.wav")],
        check=True,
    )
    subprocess.run(["sox", path("wav"), "-b", "16", path("sox.aif")], check=True)
    whole = open(path("m4a"), "rb").read()
    open(os.path.join(out, "truncated.m4a"), "wb").write(whole[: len(whole) // 2])


if __name__ == "__main__":
    main()
