#!/usr/bin/env bash
# What ragafusion needs beyond the Rust toolchain, from Debian's packages:
# - `ffmpeg` (ffmpeg and ffprobe) for `score-video` and its tests;
# - headless `chromium` for the compare report test and the studio
#   browser test.
# Installs only what is missing (a `chromium` or `ffmpeg` already on the
# PATH, or named by RAGAFUSION_CHROMIUM / RAGAFUSION_FFMPEG, counts).
set -euo pipefail
missing=()
if [ -z "${RAGAFUSION_FFMPEG:-}" ] && ! { command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1; then
  missing+=(ffmpeg)
fi
if [ -z "${RAGAFUSION_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y "${missing[@]}" \
  || { $SUDO apt-get update && $SUDO apt-get install -y "${missing[@]}"; }
