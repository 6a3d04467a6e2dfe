#!/bin/sh
# Remakes docs/examples/default-model/ with the shipped model: a few
# captions as WAV + spectrogram PNG + JSON sidecar, each with its `analyze`
# figure (tonic given, requested raga named), and one 30 s long-form piece.
#
#   scripts/make_examples.sh [OUT]      (default docs/examples/default-model)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-docs/examples/default-model}
RF=${RF:-target/release/ragafusion}
[ -x "$RF" ] || cargo build --release
mkdir -p "$OUT"

one() { # NAME RAGA TONIC_HZ SEED ARGS...
    name=$1 raga=$2 tonic=$3 seed=$4
    shift 4
    "$RF" generate "$@" --seed "$seed" --out "$OUT" --name "$name" >/dev/null
    "$RF" analyze "$OUT/$name.wav" --tonic "$tonic" --raga "$raga" \
        --out "$OUT/$name.analysis.png" >/dev/null
    echo "$OUT/$name"
}

one kalyani-violin-alapana Kalyani 146.83 42 "Kalyani raga alapana, violin, shruti D"
one todi-voice-alapana Todi 146.83 1 "Todi raga alapana, voice"
one mohanam-flute-shruti-g Mohanam 196.0 1 "Mohanam alapana on flute, shruti G"
one kalyani-voice-kriti-adi Kalyani 146.83 1 "kriti in raga Kalyani, adi tala, voice"
one bhairavi-violin-30s Bhairavi 146.83 1 "Bhairavi raga alapana, violin" --seconds 30
