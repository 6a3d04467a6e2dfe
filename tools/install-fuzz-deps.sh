#!/usr/bin/env bash
# What the fuzz targets in fuzz/ need beyond the Rust toolchain: cargo-fuzz
# (libFuzzer's driver; the targets build on stable with `--sanitizer none`).
# libfuzzer-sys compiles libFuzzer itself with the machine's C++ compiler.
set -euo pipefail
if command -v cargo-fuzz >/dev/null 2>&1; then
  exit 0
fi
cargo install cargo-fuzz --locked
