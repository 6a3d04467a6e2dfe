#!/bin/sh
# Times the shipped model end to end, and the same model and sampler in
# diffusers, in one run on this machine:
#
#   scripts/bench_default_model.sh [MODEL] [PYTHON]
#
#   MODEL   pipeline folder (default checkpoints/ragafusion-carnatic-v1)
#   PYTHON  a Python with tools/requirements-sd.txt installed (default
#           python3); without diffusers the second half is skipped
#
# ragafusion: wall time of whole `generate` processes (start, model load,
# text, denoising, VAE decode, spectrogram to audio, files written) at the
# model's default settings, for one 5.12 s clip (3 runs) and a 30 s
# long-form piece (1 run), with the sidecar's own split of the time.
# diffusers: StableDiffusionPipeline.from_pretrained on the same folder,
# the same sampler, steps and guidance, text to image (no audio), 3 runs,
# torch on 2 threads. Prints one JSON object per measurement.
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-checkpoints/ragafusion-carnatic-v1}
PY=${2:-python3}
RF=${RF:-target/release/ragafusion}
[ -x "$RF" ] || cargo build --release
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
PROMPT="Kalyani raga alapana, violin"

now() { date +%s.%N; }
for i in 1 2 3; do
    t0=$(now)
    "$RF" generate "$PROMPT" --model "$MODEL" --out "$OUT" --name clip$i --seed $i >/dev/null 2>&1
    t1=$(now)
    echo "{\"what\": \"ragafusion 5.12 s clip\", \"run\": $i, \"wall_s\": $(awk "BEGIN{print $t1 - $t0}"), \"sidecar\": $(cat "$OUT/clip$i.json" | tr -d '\n')}"
done
t0=$(now)
"$RF" generate "$PROMPT" --model "$MODEL" --out "$OUT" --name long --seconds 30 >/dev/null 2>&1
t1=$(now)
echo "{\"what\": \"ragafusion 30 s long form\", \"wall_s\": $(awk "BEGIN{print $t1 - $t0}"), \"sidecar\": $(cat "$OUT/long.json" | tr -d '\n')}"

SETTINGS=$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['scheduler'], d['steps'], d['guidance'])" "$OUT/clip1.json")
set -- $SETTINGS
if "$PY" -c "import diffusers" 2>/dev/null; then
    t0=$(now)
    R=$("$PY" tools/bench_pipeline_diffusers.py --model "$MODEL" --prompt "$PROMPT" \
        --scheduler "$1" --steps "$2" --guidance "$3" --repeats 3 --threads 2)
    t1=$(now)
    echo "{\"what\": \"diffusers text to image\", \"process_wall_s\": $(awk "BEGIN{print $t1 - $t0}"), \"result\": $R}"
else
    echo "{\"what\": \"diffusers text to image\", \"skipped\": \"$PY has no diffusers\"}"
fi
