#!/usr/bin/env bash
# Short GPU training smoke test (see ../shared/gpu/README.md for the build).
#
# Build here:   source ../shared/gpu/cuda-env.sh && cargo build --release --features cuda
#               mkdir -p .gpu && cp target/release/ragafusion .gpu/ && strip .gpu/ragafusion
# Run there:    scripts/gpu_train_smoke.sh   (with .gpu carried; results under $OUT)
#
# Renders labelled clips, then on cuda: a tiny VAE, the latent raga
# classifier, a fresh tiny UNet in bf16 with the aux loss, a LoRA
# fine-tune of it with gradient checkpointing, resume, and a generation
# from each export.
set -euo pipefail
B=${RAGAFUSION:-.gpu/ragafusion}
OUT=${OUT:-out/gpu-smoke}
W=$(mktemp -d)
if [ -z "${LD_LIBRARY_PATH:-}" ]; then
  SP=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
  [ -n "$SP" ] && export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib
fi
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/smoke.log"; }
run() { "$@" 2>&1 | tr '\r' '\n' | tail -3 | tee -a "$OUT/smoke.log"; }

log synth
run "$B" synth "$W/wav" --raga Mohanam --raga Hindolam --count 8 --timbre flute \
  --tonic-hz 146.83 --no-percussion
run "$B" audio-to-image "$W/wav" "$W/img" --num-mel-bins 64 --min-hz 60 --max-hz 700
for f in "$W"/img/*.png; do
  n=$(basename "$f"); r=${n%%_*}; r=${r^}
  printf '{"file_name": "%s", "text": "%s raga", "raga": "%s"}\n' "$n" "$r" "$r"
done > "$W/img/metadata.jsonl"
log train-vae
run "$B" train-vae --data "$W/img" --out "$W/vae" --model tests/data/sd-tiny \
  --config tiny --max-steps 50 --crop-px 128 --device cuda
log train-latent-classifier
run "$B" train-latent-classifier --data "$W/img" --model "$W/vae/final" \
  --out "$W/clf" --steps 50 --device cuda
log "train (fresh tiny UNet, bf16, aux loss)"
run "$B" train --data "$W/img" --out "$W/full" --model "$W/vae/final" --config tiny \
  --max-steps 20 --batch-size 4 --crop-px 256 --mixed-precision bf16 \
  --aux-classifier "$W/clf" --checkpoint-every 10 --device cuda
run "$B" train --out "$W/full" --resume --max-steps 30 --device cuda
log "train (LoRA on that export, gradient checkpointing)"
run "$B" train --data "$W/img" --out "$W/lora" --model "$W/full/final" --lora \
  --max-steps 20 --batch-size 4 --crop-px 256 --gradient-checkpointing --device cuda
for m in full lora; do
  log "generate ($m)"
  run "$B" generate "Mohanam raga" --model "$W/$m/final" --out "$OUT/gen-$m" \
    --steps 20 --device cuda
  cp "$W/$m/metrics.jsonl" "$OUT/metrics-$m.jsonl"
done
nvidia-smi --query-gpu=name,memory.used --format=csv | tee -a "$OUT/smoke.log" || true
log done
