#!/usr/bin/env bash
# bench/campaign-costs.sh — what one epoch of each (model, dataset) of the pre-trained campaign
# costs on this machine, and the campaign's arithmetic: runs × epochs × seconds
# (docs/results.md, "The pre-trained campaign: plan").
#
# Each (model, dataset) runs 2 epochs of the campaign's exact protocol (scripts/results, one
# thread, seed 0) into a scratch folder, one after another: run it on an idle machine. The
# figure is the second epoch's seconds (the first also warms caches and the allocator); the
# start-up (reading, featurising and splitting the data, loading the weights) is the run's
# wall time minus its epochs. Then it prints, per line of the plan, runs × epochs × seconds.
#
# Usage: bench/campaign-costs.sh [--quick]   (--quick: BACE only, to try the script)
#   env: ANGES_TRAIN=BINARY as scripts/results; ANGES_COSTS_OUT=DIR keeps the scratch runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="${ANGES_COSTS_OUT:-$(mktemp -d)}"
mkdir -p "$SCRATCH"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY=python3

# The plan: "models datasets seeds epochs lr extra" per line. The 1D lines group batches by
# length (a 1D SIDER epoch takes 5× longer without it) and fine-tune at 1e-4 (models/README.md).
PLAN=(
    "gin-anges,gcn-supervised-contextpred,gcn-random bbbp,bace,clintox,sider,tox21,toxcast 3 100 1e-3 -"
    "transformer-anges,transformer-random bbbp,bace,clintox,sider 3 30 1e-4 --group-by-length"
    "gcn-supervised-contextpred esol,freesolv,lipophilicity 3 100 1e-3 -"
)
if [[ "${1:-}" == "--quick" ]]; then
    PLAN=("gcn-random,transformer-anges bace 3 100 1e-3 -")
fi

if [[ -z "${ANGES_TRAIN:-}" ]]; then
    eval "$("$ROOT/scripts/setup" --print-env)"
    (cd "$ROOT" && cargo build --release -q -p anges-trainer --bin anges-train)
    export ANGES_TRAIN="$ROOT/target/release/anges-train"
fi

log() { printf '[costs] %s\n' "$*" >&2; }
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
TABLE="$SCRATCH/costs.tsv"
: >"$TABLE"
for line in "${PLAN[@]}"; do
    read -r models datasets seeds epochs lr extra <<<"$line"
    [[ "$extra" == "-" ]] && extra=""
    IFS=, read -ra ms <<<"$models"
    IFS=, read -ra ds <<<"$datasets"
    for m in "${ms[@]}"; do
        for d in "${ds[@]}"; do
            out="$SCRATCH/lr$lr"
            start=$(date +%s.%N)
            ANGES_RESULTS_EXTRA="$extra" "$ROOT/scripts/results" --datasets "$d" --models "$m" \
                --seeds 0 --epochs 2 --threads 1 --lr "$lr" --out "$out" >>"$SCRATCH/runs.log" 2>&1 \
                || { log "$m $d failed: see $SCRATCH/runs.log"; tail -5 "$SCRATCH/runs.log" >&2; exit 1; }
            wall=$(echo "$(date +%s.%N) - $start" | bc)
            log "$m $d: ${wall%.*} s for 2 epochs"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$d" "$seeds" "$epochs" "$wall" \
                "$out/$d-$m-s0/epochs.jsonl" >>"$TABLE"
        done
    done
done

"$PY" - "$TABLE" <<'EOF'
import json, sys
rows, total = [], 0.0
for line in open(sys.argv[1]):
    model, dataset, seeds, epochs, wall, log = line.rstrip("\n").split("\t")
    epochs_logged = [json.loads(l) for l in open(log)]
    per_epoch = epochs_logged[1]["seconds"]
    startup = float(wall) - sum(e["seconds"] for e in epochs_logged)
    run = startup + int(epochs) * per_epoch
    cost = int(seeds) * run
    total += cost
    rows.append((model, dataset, per_epoch, startup, int(seeds), int(epochs), run, cost))
print("\n| model | dataset | s/epoch | start-up s | runs | epochs | s/run | runs × s/run |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for m, d, e, s, n, ep, r, c in rows:
    print(f"| {m} | {d} | {e:.1f} | {s:.0f} | {n} | {ep} | {r:.0f} | {c:.0f} |")
print(f"\ntotal: {total:.0f} s of one core = {total / 3600:.1f} core-hours;"
      f" two runs at a time on two cores: {total / 7200:.1f} h")
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n "${ANGES_COSTS_OUT:-}" ]] || rm -rf "$SCRATCH"
