#!/bin/sh
# Remakes the default Carnatic generator from nothing, stage by stage, on
# the CPU (2 cores) or with DEVICE=cuda. Every stage resumes: rerun the
# script after an interruption and it continues where it stopped.
#
#   tools/train-default.sh [WORK]        (default WORK: runs/default)
#
# Stages (each skipped when its output exists):
#   data   synth renders of RAGAS at the canonical tonic (D, 146.83 Hz),
#          every segment type, timbre and tala, as 128-bin spectrograms
#          (22.05 kHz, 40-4000 Hz, 10 ms hop) with captions
#   vae    a fresh `tiny` autoencoder on those spectrograms
#   text   the tokenizer and CLIP text encoder (train-text-encoder), and the
#          pipeline with a fresh UNet of UNET_CONFIG
#   unet   the UNet, from scratch, on the captioned spectrograms, in
#          crops of 256 px (2.56 s)
#   export WORK/model: the newest checkpoint's EMA UNet in f16 with the
#          pipeline, the canonical tonic and the sampler settings in
#          ragafusion.json. It can run while a training stage is still
#          going, from another shell: STAGE=export.
#   ft     a second set of renders (seeds 4 and 5: 100 clips per raga as
#          drawn, plus 60 kritis with percussion per raga), and the UNet
#          fine-tuned on it from WORK/model in whole-clip crops of 512 px,
#          so that it learns full 5.12 s clips as it makes them
#   export again, from the fine-tuning run (checkpoints/ragafusion-carnatic-v1
#          is this folder plus its model card: unet step 4000, then ft
#          step 750 of FT_STEPS)
#
# Environment: CLIPS (per raga, 160), VAE_STEPS (350), TEXT_STEPS (800),
# UNET_CONFIG (compact), UNET_STEPS (6000), BATCH (16), GUIDANCE (7),
# FT_STEPS (3000; 0 skips the stage), FT_BATCH (12),
# DEVICE (cpu), RF
# (the ragafusion binary; built with `cargo build --release` when unset).
# tools/train-default-gpu.sh sets them for a larger model on a GPU.
#
# The tests' tiny pipeline (tests/data/sd-tiny) is only the scaffold the VAE
# stage starts from: its tokenizer, text encoder and UNet are all replaced
# by the text stage.
set -eu

cd "$(dirname "$0")/.."
WORK=${1:-runs/default}
CLIPS=${CLIPS:-160}
VAE_STEPS=${VAE_STEPS:-350}
TEXT_STEPS=${TEXT_STEPS:-800}
UNET_CONFIG=${UNET_CONFIG:-compact}
UNET_STEPS=${UNET_STEPS:-6000}
GUIDANCE=${GUIDANCE:-7}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cpu}
FT_STEPS=${FT_STEPS:-3000}
FT_BATCH=${FT_BATCH:-12}
if [ -z "${RF:-}" ]; then
    cargo build --release
    RF=target/release/ragafusion
fi
RAGAS="Kalyani Shankarabharanam Todi Kharaharapriya Mayamalavagowla Shanmukhapriya
Simhendramadhyamam Keeravani Charukesi Pantuvarali Mohanam Hamsadhwani Hindolam Abhogi
Madhyamavati Bhairavi Anandabhairavi Kambhoji Begada Saveri Sri Kedaragowla Bilahari
Natakurinji"
mkdir -p "$WORK"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

export_model() {
    RUN="$WORK/unet"
    [ -d "$WORK/ft/unet/checkpoints" ] && RUN="$WORK/ft/unet"
    "$RF" export-checkpoint --run "$RUN" --out "$WORK/model" --dtype f16 \
        --canonical-tonic-hz 146.83 --scheduler dpmpp-2m --steps 20 --guidance "$GUIDANCE"
}
if [ "${STAGE:-}" = export ]; then
    export_model
    exit 0
fi

# --- data -------------------------------------------------------------
if [ ! -f "$WORK/img/metadata.jsonl" ]; then
    stamp "data: rendering $CLIPS clips per raga"
    set --
    for r in $RAGAS; do set -- "$@" --raga "$r"; done
    "$RF" synth "$WORK/wav" "$@" --count "$CLIPS" --tonic-hz 146.83 --seed 1
    "$RF" audio-to-image "$WORK/wav" "$WORK/img" --sample-rate-hz 22050 \
        --num-mel-bins 128 --min-hz 40 --max-hz 4000 --captions
fi

# --- vae --------------------------------------------------------------
if [ ! -f "$WORK/vae/final/model_index.json" ]; then
    stamp "vae: $VAE_STEPS steps"
    RESUME=""
    [ -f "$WORK/vae/state.safetensors" ] && RESUME=--resume
    "$RF" train-vae --data "$WORK/img" --out "$WORK/vae" --model tests/data/sd-tiny \
        --config tiny --max-steps "$VAE_STEPS" --batch-size 8 --crop-px 256 \
        --checkpoint-every 50 --learning-rate 1e-3 --device "$DEVICE" $RESUME
fi

# --- text -------------------------------------------------------------
if [ ! -f "$WORK/text/final/model_index.json" ]; then
    stamp "text: $TEXT_STEPS steps"
    "$RF" train-text-encoder --model "$WORK/vae/final" --out "$WORK/text" \
        --unet-config "$UNET_CONFIG" --steps "$TEXT_STEPS" --context 32 --batch-size 48
fi

# --- unet -------------------------------------------------------------
if [ ! -f "$WORK/unet/final/model_index.json" ]; then
    stamp "unet: $UNET_STEPS steps"
    RESUME=""
    [ -d "$WORK/unet/checkpoints" ] && RESUME=--resume
    "$RF" train --data "$WORK/img" --out "$WORK/unet" --model "$WORK/text/final" \
        --max-steps "$UNET_STEPS" --batch-size "$BATCH" --crop-px 256 \
        --learning-rate 1e-3 --lr-scheduler cosine --lr-warmup-steps 200 \
        --snr-gamma 5 --caption-dropout 0.1 --ema-decay 0.999 --checkpoint-every 250 \
        --device "$DEVICE" $RESUME
fi
# --- export -----------------------------------------------------------
[ -d "$WORK/ft/unet/checkpoints" ] || export_model

# --- ft ---------------------------------------------------------------
if [ "$FT_STEPS" -gt 0 ] && [ ! -f "$WORK/ft/unet/final/model_index.json" ]; then
    FT="$WORK/ft"
    if [ ! -f "$FT/img/metadata.jsonl" ]; then
        stamp "ft data: second set of renders"
        set --
        for r in $RAGAS; do set -- "$@" --raga "$r"; done
        "$RF" synth "$FT/wav-a" "$@" --count 100 --tonic-hz 146.83 --seed 4
        "$RF" synth "$FT/wav-b" "$@" --count 60 --tonic-hz 146.83 --seed 5 \
            --segment kriti --percussion
        mkdir -p "$FT/img"
        rm -f "$FT/img/metadata.jsonl.tmp"
        for d in a b; do
            "$RF" audio-to-image "$FT/wav-$d" "$FT/img-$d" --sample-rate-hz 22050 \
                --num-mel-bins 128 --min-hz 40 --max-hz 4000 --captions
            for f in "$FT/img-$d"/*.png; do ln -f "$f" "$FT/img/$d-$(basename "$f")"; done
            sed "s/\"file_name\": *\"/&$d-/" "$FT/img-$d/metadata.jsonl" \
                >> "$FT/img/metadata.jsonl.tmp"
        done
        mv "$FT/img/metadata.jsonl.tmp" "$FT/img/metadata.jsonl"
    fi
    stamp "ft: $FT_STEPS steps from $WORK/model"
    RESUME=""
    [ -d "$FT/unet/checkpoints" ] && RESUME=--resume
    "$RF" train --data "$FT/img" --out "$FT/unet" --model "$WORK/model" \
        --max-steps "$FT_STEPS" --batch-size "$FT_BATCH" --crop-px 512 \
        --learning-rate 2e-4 --lr-scheduler cosine --lr-warmup-steps 50 \
        --snr-gamma 5 --caption-dropout 0.1 --ema-decay 0.999 --checkpoint-every 250 \
        --device "$DEVICE" $RESUME
fi
export_model
stamp "done: $WORK/model"
