#!/usr/bin/env python3
"""Per-prompt (or per-raga) figures from a `ragafusion compare` run's
results.csv, as a Markdown table: what the per-backend summary averages
away, e.g. how the timbre moves with the instrument in the caption or
whether kritis with a tala keep a pulse.

Usage (Python 3 standard library only):
  python3 tools/compare_breakdown.py OUT/results.csv [--by prompt_id|raga]
      [--backends NAME,NAME]

Columns: clips; kNN and CNN top-3 hit rates (the requested raga among
the judge's best three); in-scale ratio above chance; spectral centroid
(Hz); onset-grid excess over random onsets (`raga::rhythm`, mean over the
clips with enough onsets, their count in brackets).
"""
import argparse
import csv
from collections import OrderedDict


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--by", default="prompt_id", choices=["prompt_id", "raga"])
    ap.add_argument("--backends", default=None)
    args = ap.parse_args()
    keep = set(args.backends.split(",")) if args.backends else None
    groups = OrderedDict()
    with open(args.results, newline="") as f:
        for row in csv.DictReader(f):
            if keep and row["backend"] not in keep:
                continue
            key = (row["backend"], row[args.by] or row["raga"])
            groups.setdefault(key, []).append(row)
    print(f"| backend | {args.by} | clips | kNN top-3 | CNN top-3 | in-scale above chance "
          "| centroid (Hz) | onset-grid excess (clips) |")
    print("|---|---|---|---|---|---|---|---|")
    for (backend, key), rows in groups.items():
        hits = lambda col: mean([1.0 if r[col] == "true" else 0.0 for r in rows])
        num = lambda col: mean([float(r[col]) for r in rows if r[col] not in ("", None)])
        onsets = [float(r["onset_grid_excess"]) for r in rows if r["onset_grid_excess"]]
        print(f"| {backend} | {key} | {len(rows)} | {fmt(hits('knn_top3_right'), 2)} "
              f"| {fmt(hits('cnn_top3_right'), 2)} | {fmt(num('in_scale_above_chance'), 3)} "
              f"| {fmt(num('centroid_hz'), 0)} | {fmt(mean(onsets), 2)} ({len(onsets)}) |")


if __name__ == "__main__":
    main()
