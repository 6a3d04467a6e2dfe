#!/usr/bin/env bash
# What tools/make_format_fixtures.py needs besides soundfile and numpy
# (pinned in tools/requirements-riffusion.txt, installed into a venv outside
# the repository): Debian's ffmpeg (AAC / ALAC in .m4a, Opus) and sox.
# Does nothing when both are on the PATH. The tests themselves need neither:
# the fixtures are committed in tests/data/formats.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v sox >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y ffmpeg sox \
  || { $SUDO apt-get update && $SUDO apt-get install -y ffmpeg sox; }
ffmpeg -version | head -1
sox --version
