#!/usr/bin/env bash
# Screenshots of every page of `ragafusion serve` for docs/screenshots/:
# a small compare run with the tiny test pipeline (for the Compare page),
# then the browser test in screenshot mode, which fills the Generate form,
# inspects a clip and opens the report.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/data/sd-tiny "$work/sd-tiny"
cat > "$work/tiny.toml" <<TOML
name = "tiny pipeline, two ragas"
description = "the studio's Compare page, on the tiny test pipeline"
seeds = [7]
seconds = 2.0

[[setup]]
run = ["synth", "{out}/ref", "--raga", "Mohanam", "--raga", "Kalyani", "--count", "2",
       "--seed", "1", "--timbre", "flute", "--tonic-hz", "146.83", "--no-percussion",
       "--duration-s", "2"]

[[backend]]
name = "reference"
kind = "reference"
clips = "{out}/ref"

[[backend]]
name = "sd-tiny"
kind = "diffusion"
model = "sd-tiny"
steps = 2

[[prompt]]
raga = "Mohanam"
segment = "alapana"

[[prompt]]
raga = "Kalyani"
segment = "alapana"
TOML
cargo run -- compare "$work/tiny.toml" --out "$work/reports/tiny-example"
mkdir -p docs/screenshots
RAGAFUSION_SCREENSHOTS="$PWD/docs/screenshots" RAGAFUSION_STUDIO_REPORTS="$work/reports" \
  cargo test --test server_browser -- --nocapture
ls -l docs/screenshots
