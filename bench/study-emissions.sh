#!/usr/bin/env bash
# bench/study-emissions.sh — what a trade-off study itself emits, before and after issue 30 item 5.
#
# Runs the same small study twice with the in-process meter:
#   1. with --live-policies: every stopping policy trained live (the study's old cost);
#   2. without: patience and AN-GES replayed on the full run's log (the study's cost now);
# and prints, for each, its wall time and its total CO2-eq and energy: the sum over its LIVE runs'
# co2_g / energy_j in study.json (a replayed run trains nothing; its figures are a share of the
# full run's and are not added again).
#
# Usage: [EPOCHS=10] [DATASET=bace] [MODEL=gin] [SEEDS=0] [THREADS=2] \
#            bench/study-emissions.sh [OUT_DIR] [-- extra study flags]
#   e.g. EPOCHS=2 bench/study-emissions.sh /tmp/study-bench   (a quick check that it works)
# Environment: ANGES_TRAIN (the binary; default: the release build, else the debug build, of
# $CARGO_TARGET_DIR or target/), ANGES_DATA_DIR (default ../shared/datasets/moleculenet).
# Timings only mean something on an otherwise idle machine: give the two studies the same one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
    OUT="$1"
    shift
fi
[[ -n "$OUT" ]] || OUT="$(mktemp -d /tmp/study-emissions.XXXXXX)"
if [[ "${1:-}" == "--" ]]; then
    shift
fi
EXTRA=("$@")

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${ANGES_TRAIN:-}"
if [[ -z "$BIN" ]]; then
    for b in "$TARGET/release/anges-train" "$TARGET/debug/anges-train"; do
        [[ -x "$b" ]] && { BIN="$b"; break; }
    done
fi
[[ -n "$BIN" && -x "$BIN" ]] || { echo "no anges-train binary: build it or set ANGES_TRAIN" >&2; exit 1; }
export ANGES_DATA_DIR="${ANGES_DATA_DIR:-$ROOT/../shared/datasets/moleculenet}"

mkdir -p "$OUT"
# An empty meter configuration: no meterd.toml of the machine changes the figures.
: > "$OUT/meterd.toml"
# The same study both times; --keep-ratios '': no MolPeg run (pruned runs are trained
# live either way and would only add the same cost to both).
STUDY=(study --dataset "${DATASET:-bace}" --model "${MODEL:-gin}" --epochs "${EPOCHS:-10}"
       --seeds "${SEEDS:-0}" --keep-ratios ''
       --meter local --meter-config "$OUT/meterd.toml" --device cpu --threads "${THREADS:-2}")

run_study() { # NAME [FLAGS…]
    local name="$1"; shift
    local dir="$OUT/$name"
    rm -rf "$dir"
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" "${STUDY[@]}" "$@" "${EXTRA[@]}" --out "$dir" > "$OUT/$name.log" 2>&1 \
        || { echo "$name: the study failed, see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 - "$dir/study.json" "$name" "$t0" "$t1" <<'PY'
import json, sys
path, name, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
runs = json.load(open(path))["runs"]
live = [r for r in runs if r.get("source", "live") == "live"]
g = sum(r["co2_g"] for r in live)
j = sum(r["energy_j"] for r in live)
print(f"{name:<16} wall {t1 - t0:8.1f} s   live runs {len(live)} of {len(runs)}   "
      f"CO2-eq {g:.6f} g   energy {j:.1f} J   ({', '.join(r['label'] for r in live)})")
PY
}

echo "binary: $BIN"
echo "study:  $(printf '%q ' "${STUDY[@]}" "${EXTRA[@]}")"
run_study live-policies --live-policies
run_study replayed
echo "folders under $OUT"
