#!/usr/bin/env bash
# What the tests need beyond the Rust toolchain: headless Chromium (Debian's
# `chromium` package) for the compare report test and the studio browser
# test. Does nothing when a
# `chromium` is already on the PATH (or RAGAFUSION_CHROMIUM names one).
set -euo pipefail
if [ -n "${RAGAFUSION_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y chromium \
  || { $SUDO apt-get update && $SUDO apt-get install -y chromium; }
chromium --version
