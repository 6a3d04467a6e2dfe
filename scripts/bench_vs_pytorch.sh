#!/bin/sh
# ragafusion against its PyTorch reference in one command: the same model
# size, sampler, steps and threads on both sides, one run each, then the
# time ratios (ragafusion / PyTorch: below 1 means ragafusion is faster).
#
#   scripts/bench_vs_pytorch.sh sd15 PYTHON [STEPS]
#       `ragafusion bench-sd` against tools/bench_diffusers.py: the SD 1.5
#       UNet and VAE with random weights, 512 x 512, PNDM, guidance 7 (the
#       UNet runs on a batch of two), f32; STEPS default 5
#   scripts/bench_vs_pytorch.sh musicgen PYTHON [SIZE] [SECONDS]
#       `ragafusion bench-musicgen` against
#       tools/bench_transformers_musicgen.py: MusicGen SIZE (small) with
#       random weights, SECONDS (4) of audio, guidance 3, f32
#   scripts/bench_vs_pytorch.sh default PYTHON
#       the shipped model end to end against diffusers on the same folder
#       (scripts/bench_default_model.sh)
#
# PYTHON is a Python with tools/requirements-sd.txt (sd15, default) or
# tools/requirements-musicgen.txt (musicgen) installed, in a venv outside
# the repository. THREADS (default: every core) sets rayon's and torch's
# thread counts alike. Nothing else should run meanwhile. RF names the
# ragafusion binary (default target/release/ragafusion, built if missing).
set -eu
cd "$(dirname "$0")/.."
WHAT=${1:?usage: scripts/bench_vs_pytorch.sh sd15|musicgen|default PYTHON [...]}
PY=${2:?the second argument is a Python with the reference stack}
RF=${RF:-target/release/ragafusion}
[ -x "$RF" ] || cargo build --release
THREADS=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# ratio FILE_A FILE_B EXPR...: prints each `label=python-expression` over
# the two reports `a` (ragafusion) and `b` (PyTorch)
ratio() {
    a=$1 b=$2
    shift 2
    python3 - "$a" "$b" "$@" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
for item in sys.argv[3:]:
    label, expr = item.split("=", 1)
    print(json.dumps({"ratio": label, "ragafusion_over_pytorch": round(eval(expr), 3)}))
PY
}

case "$WHAT" in
sd15)
    STEPS=${3:-5}
    "$RF" bench-sd --steps "$STEPS" --json "$OUT/rf.json" >/dev/null
    "$PY" tools/bench_diffusers.py --steps "$STEPS" > "$OUT/pt.json"
    cat "$OUT/rf.json"; echo; cat "$OUT/pt.json"
    ratio "$OUT/rf.json" "$OUT/pt.json" \
        "unet_step_time=a['report']['s_per_step'] / b['s_per_step']" \
        "vae_decode_time=a['report']['decode_s'] / b['decode_s']" \
        "peak_rss=a['report']['peak_rss_mib'] / b['peak_rss_mib']"
    ;;
musicgen)
    SIZE=${3:-small}
    SECONDS_=${4:-4}
    "$RF" bench-musicgen --size "$SIZE" --seconds "$SECONDS_" --json "$OUT/rf.json" >/dev/null
    "$PY" tools/bench_transformers_musicgen.py --size "$SIZE" --seconds "$SECONDS_" \
        --threads "$THREADS" > "$OUT/pt.json"
    cat "$OUT/rf.json"; echo; cat "$OUT/pt.json"
    ratio "$OUT/rf.json" "$OUT/pt.json" \
        "decoder_step_time=b['tokens_per_s'] / a['report']['tokens_per_s']"
    ;;
default)
    RF="$RF" scripts/bench_default_model.sh checkpoints/ragafusion-carnatic-v1 "$PY"
    ;;
*)
    echo "unknown benchmark $WHAT: sd15, musicgen or default" >&2
    exit 2
    ;;
esac
