#!/usr/bin/env bash
# Peak memory of the spectrogram codec on long inputs: renders MINUTES of
# synthetic Carnatic audio, converts it to a spectrogram image and back,
# and prints each step's wall time and peak resident set (GNU time's
# "Maximum resident set size"). The results are recorded in
# docs/reliability.md.
#
# Usage: scripts/long_spectrogram_memory.sh [MINUTES] [WORKDIR]
# (release build: cargo build --release; default 10 minutes in a temporary
# folder).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
work="${2:-$(mktemp -d)}"
bin=target/release/ragafusion
[ -x "$bin" ] || cargo build --release
seconds=$((minutes * 60))

measure() {
  local what="$1"
  shift
  /usr/bin/time -f "$what: %e s wall, %M KiB peak RSS" "$@" 2>&1 >/dev/null \
    | grep -F -e "$what:" -e "error" || true
}

# synth renders at most 600 s per clip: join clips for longer inputs
"$bin" synth "$work/synth" --raga Kalyani --count "$(((seconds + 599) / 600))" \
  --duration-s "$((seconds < 600 ? seconds : 600))" --seed 3 >/dev/null 2>&1
python3 - "$work" "$seconds" <<'EOF'
import sys, wave, glob
work, seconds = sys.argv[1], int(sys.argv[2])
parts = sorted(glob.glob(f"{work}/synth/*.wav"))
with wave.open(parts[0]) as w:
    params = w.getparams()
frames = b""
for p in parts:
    with wave.open(p) as w:
        frames += w.readframes(w.getnframes())
need = seconds * params.framerate * params.sampwidth * params.nchannels
with wave.open(f"{work}/long.wav", "wb") as out:
    out.setparams(params)
    out.writeframes(frames[:need])
EOF
rm -f "$work/long.png" "$work/back.wav"
measure "audio-to-image ($minutes min)" "$bin" audio-to-image "$work/long.wav" "$work/long.png"
measure "image-to-audio ($minutes min)" "$bin" image-to-audio "$work/long.png" "$work/back.wav"
ls -l "$work/long.wav" "$work/long.png" "$work/back.wav"
