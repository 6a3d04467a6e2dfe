#!/usr/bin/env python3
"""Measures a raga classifier on real recordings that may not be committed.

Two public sets are known; fetch a copy yourself (they carry no licence, so
they are used only to measure: never commit their audio, never put it in
tests/data, never train a shipped model on it):

- `karadifilms`: github.com/karadifilms/ragas, about 70 raga clips of one
  Yakshagana performance, `data/raag_NAME.m4a` (the file name is the raga);
- `ragaveda`: github.com/soha-18/RagaVeda---Hindustani-Classical-Raga-Identification,
  Hindustani recordings in one folder per raga; duplicates (the same bytes
  under several names) are counted once, by SHA-256.

Each recording becomes one excerpt (the first `--seconds`, mono, 44.1 kHz,
cut by ffmpeg: `tools/install-format-tools.sh`) with a JSON label naming
the raga as the source spells it. `ragafusion evaluate --skip-unknown` then
matches the names to the vocabulary (Hindustani names resolve to their
Carnatic equivalents there), scores the classifier, and lists the names it
could not match in metrics.json.

Usage:
  python3 tools/eval_real_ragas.py karadifilms CLONE OUT [--model DIR] [--seconds 30]
  python3 tools/eval_real_ragas.py ragaveda CLONE OUT [--model DIR]

OUT/clips holds the excerpts and OUT/report the evaluation (metrics.json
with per-clip rankings, confusion.csv, confusion.png). Excerpts already cut
are reused.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

AUDIO = (".m4a", ".mp3", ".wav", ".flac", ".ogg", ".aac", ".mp4", ".webm", ".opus")


def karadifilms(clone):
    """(source path, raga name) for every clip of the karadifilms set."""
    data = os.path.join(clone, "data")
    for name in sorted(os.listdir(data)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in AUDIO:
            continue
        # raag_NAME, once raag_raag_NAME; "chakravaka_(ahir_bhairav)" names
        # the Carnatic raga first and its Hindustani cousin in brackets.
        raga = re.sub(r"^(raag_)+", "", stem)
        raga = re.sub(r"_?\(.*\)$", "", raga).replace("_", " ").strip()
        yield os.path.join(data, name), raga


def ragaveda(clone):
    """(source path, raga name) for every distinct recording of RagaVeda's
    Datasets/ folder: the raga is the name of the folder that holds the
    file (Test/ repeats some of the same files)."""
    seen = set()
    top = os.path.join(clone, "Datasets")
    for root, _dirs, files in sorted(os.walk(top if os.path.isdir(top) else clone)):
        if "/.git" in root:
            continue
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() not in AUDIO:
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            raga = os.path.basename(root).replace("_", " ").strip()
            yield path, raga


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", choices=["karadifilms", "ragaveda"])
    p.add_argument("clone", help="a fetched copy of the set's repository")
    p.add_argument("out", help="folder for the excerpts and the report")
    p.add_argument("--seconds", type=float, default=30.0, help="excerpt length")
    p.add_argument("--model", help="classifier folder (default: the built-in)")
    p.add_argument("--bin", default="target/release/ragafusion", help="the ragafusion binary")
    a = p.parse_args()

    clips = os.path.join(a.out, "clips")
    os.makedirs(clips, exist_ok=True)
    listing = karadifilms(a.clone) if a.set == "karadifilms" else ragaveda(a.clone)
    n = 0
    for i, (src, raga) in enumerate(listing):
        base = os.path.join(clips, f"{i:03d}-{slug(raga)}")
        wav = base + ".wav"
        if not os.path.exists(wav):
            tmp = base + ".part.wav"
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", src, "-t", str(a.seconds),
                 "-ac", "1", "-ar", "44100", "-c:a", "pcm_s16le", tmp],
                check=True,
            )
            os.replace(tmp, wav)
        with open(base + ".json", "w") as f:
            json.dump({"raga": raga, "source": os.path.relpath(src, a.clone)}, f)
        n += 1
    print(f"{n} excerpts in {clips}", file=sys.stderr)

    cmd = [a.bin, "evaluate", "--data", clips, "--out", os.path.join(a.out, "report"),
           "--skip-unknown"]
    if a.model:
        cmd += ["--model", a.model]
    metrics = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    skipped = metrics.get("skipped", [])
    print(f"{a.set}: {metrics['clips']} clips in the vocabulary, {len(skipped)} not; "
          f"top-1 {100 * metrics['top1']:.1f}%, top-3 {100 * metrics['top3']:.1f}%")
    for s in skipped:
        print(f"  not in the vocabulary: {s['raga']} ({os.path.basename(s['file'])})")


if __name__ == "__main__":
    main()
