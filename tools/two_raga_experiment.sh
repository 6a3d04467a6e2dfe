#!/usr/bin/env bash
# The two-raga CPU experiment of docs/training.md: render labelled clips of
# Mohanam and Hindolam, train a tiny VAE, a latent raga classifier and two
# tiny UNets from scratch (aux-loss lambda 0 and lambda > 0), generate
# clips of both ragas with each, and judge them with the built-in CNN and
# with a PCD/TDMS kNN trained on a separately rendered set.
#
#   tools/two_raga_experiment.sh [WORK_DIR]    (default out/two-raga)
#
# Environment: RAGAFUSION (binary, default target/release/ragafusion),
# VAE_STEPS (400), UNET_STEPS (600), LAMBDAS (aux-loss weights, one UNet
# each, default "0 0.1"), AUX_T_MAX (200), SEEDS (per raga, 8).
# Stages whose output exists are skipped, so a rerun continues, and a
# second WORK_DIR can share the first one's clips, VAE and judges by
# symlinking wav, judge-wav, img, vae, latent-clf and knn into it.
set -euo pipefail
B=${RAGAFUSION:-target/release/ragafusion}
W=${1:-out/two-raga}
VAE_STEPS=${VAE_STEPS:-400}
UNET_STEPS=${UNET_STEPS:-600}
LAMBDAS=${LAMBDAS:-0 0.1}
AUX_T_MAX=${AUX_T_MAX:-200}
SEEDS=${SEEDS:-8}
TONIC=146.83
SPEC=(--num-mel-bins 64 --min-hz 60 --max-hz 700)
CLIPS=(--raga Mohanam --raga Hindolam --timbre flute --tonic-hz "$TONIC" --no-percussion)
mkdir -p "$W"

# 1. labelled clips (training set, and a judge set the models never see)
[ -d "$W/wav" ] || "$B" synth "$W/wav" "${CLIPS[@]}" --count 32 --seed 1
[ -d "$W/judge-wav" ] || "$B" synth "$W/judge-wav" "${CLIPS[@]}" --count 16 --seed 2
# 2. narrow-band spectrograms: 64 mel bins over 60-700 Hz, 10 ms columns
[ -d "$W/img" ] || "$B" audio-to-image "$W/wav" "$W/img" "${SPEC[@]}"
if [ ! -f "$W/img/metadata.jsonl" ]; then
  for f in "$W"/img/*.png; do
    n=$(basename "$f"); r=${n%%_*}; r=${r^}
    printf '{"file_name": "%s", "text": "%s raga", "raga": "%s"}\n' "$n" "$r" "$r"
  done > "$W/img/metadata.jsonl.tmp"
  mv "$W/img/metadata.jsonl.tmp" "$W/img/metadata.jsonl"
fi
# 3. a tiny VAE for these images (the text encoder etc. come from sd-tiny)
[ -d "$W/vae/final" ] || "$B" train-vae --data "$W/img" --out "$W/vae" \
  --model tests/data/sd-tiny --config tiny --max-steps "$VAE_STEPS" \
  --crop-px 128 --batch-size 4 --checkpoint-every 100 --resume
# 4. the latent raga classifier (the aux-loss judge)
[ -f "$W/latent-clf/model.safetensors" ] || "$B" train-latent-classifier \
  --data "$W/img" --model "$W/vae/final" --out "$W/latent-clf" --steps 300 \
  --batch-size 16 --crop-px 256
# 5. one tiny UNet from scratch per lambda (lambda 0: no aux loss)
common=(--data "$W/img" --model "$W/vae/final" --config tiny --max-steps "$UNET_STEPS"
  --batch-size 4 --crop-px 256 --learning-rate 1e-3 --lr-warmup-steps 50
  --caption-dropout 0.1 --checkpoint-every 200 --seed 0)
runs=()
for l in $LAMBDAS; do
  run="unet-lambda-$l"; runs+=("$run")
  # lambda 0 loads the classifier too: its CE is logged, not trained on,
  # and every run draws the same crops, noise and timesteps
  [ -d "$W/$run/final" ] || "$B" train --out "$W/$run" "${common[@]}" \
    --aux-classifier "$W/latent-clf" --aux-lambda "$l" --aux-t-max "$AUX_T_MAX"
done
# 6. the second judge: PCD/TDMS kNN on the unseen judge set
[ -f "$W/knn/config.json" ] || "$B" train-classifier --data "$W/judge-wav" \
  --out "$W/knn" --kind knn
# 7. generate SEEDS clips per raga with each model and judge them
for run in "${runs[@]}"; do
  out="$W/gen-$run"
  for r in Mohanam Hindolam; do
    for s in $(seq 1 "$SEEDS"); do
      name="${r,,}-$s"
      [ -f "$out/$name.wav" ] || "$B" generate "$r raga" --model "$W/$run/final" \
        --out "$out" --name "$name" --seed "$s" --steps 25 --guidance 3 >/dev/null
    done
  done
  for judge in builtin knn; do
    model=(); [ "$judge" = knn ] && model=(--model "$W/knn")
    right=0; total=0
    for f in "$out"/*.wav; do
      n=$(basename "$f" .wav); want=${n%%-*}
      top=$("$B" classify "$f" --tonic "$TONIC" --top 1 "${model[@]}" \
        | grep -o '"raga": *"[^"]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/')
      total=$((total + 1)); [ "${top,,}" = "$want" ] && right=$((right + 1))
      echo "$run $judge $n $top" >> "$W/verdicts.txt.tmp"
    done
    echo "$run judged by $judge: $right / $total labelled with the requested raga"
  done
done | tee "$W/summary.txt"
mv "$W/verdicts.txt.tmp" "$W/verdicts.txt"
