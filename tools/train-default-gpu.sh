#!/bin/sh
# The default model's recipe at a larger size, for a machine with a CUDA
# GPU: the same stages as tools/train-default.sh (which see), with the
# `small` UNet (~100 M parameters instead of 4 M), larger batches and more
# steps. Build the CUDA binary first (`cargo build --release --features
# cuda`, or ../shared/gpu/cuda-env.sh on a machine without the toolkit) and
# pass it as RF.
#
#   RF=target/release/ragafusion tools/train-default-gpu.sh [WORK]
#
# (default WORK: runs/default-gpu). Every stage resumes, so a lent GPU's
# few minutes add up over several sessions.
set -eu
cd "$(dirname "$0")/.."
export DEVICE=${DEVICE:-cuda}
export UNET_CONFIG=${UNET_CONFIG:-small}
export BATCH=${BATCH:-64}
export UNET_STEPS=${UNET_STEPS:-40000}
export VAE_STEPS=${VAE_STEPS:-2000}
export TEXT_STEPS=${TEXT_STEPS:-800}
exec tools/train-default.sh "${1:-runs/default-gpu}"
