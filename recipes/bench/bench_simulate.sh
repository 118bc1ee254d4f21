#!/usr/bin/env bash
# Simulation throughput: this code against the baseline (commit 108b63e, before the speed work) on the
# same input in one run, this code with the pre-issue-14 (narrow) ranges (the cost of the wider ranges),
# and this code with every codec the ffmpeg program adds (--codecs all). Each configuration runs ROUNDS
# times, in reversed order every other round, so a machine load that drifts during the run hits all alike;
# the figures are the means over the rounds.
#   SIM_BENCH_UTTS=60   clean utterances (a seeded subset spread over all speakers)
#   SIM_BENCH_K=4       degraded versions per utterance
#   SIM_BENCH_ROUNDS=2  runs of each configuration
#   CORPUS=../shared/corpus (beside the repository)   JOBS=$(nproc)   BASELINE=108b63e
#   PYTHON=python       an interpreter with mosqa's dependencies (make bench puts .venv first on PATH)
# ast_en_allison and ast_es_allison are the same voice talent: --speaker-map gives them one speaker id.
# clips/s = new clips / seconds of the simulation itself (as summary.json reports it); "wall" also counts
# Python start-up, the file search and the reports.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CORPUS=${CORPUS:-../shared/corpus}
UTTS=${SIM_BENCH_UTTS:-60}
K=${SIM_BENCH_K:-4}
ROUNDS=${SIM_BENCH_ROUNDS:-2}
JOBS=${JOBS:-$(nproc)}
BASELINE=${BASELINE:-108b63e}
PYTHON=${PYTHON:-python}
OUT=${BENCH_OUT:-bench_out}/simulate
for kind in speech noise rir; do
    [ -d "$CORPUS/$kind" ] || { echo "error: $CORPUS/$kind not found (set CORPUS)" >&2; exit 2; }
done
mkdir -p "$OUT"
CORPUS=$(cd "$CORPUS" && pwd)
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.times
BASE_SRC=$(mktemp -d)
trap 'rm -rf "$BASE_SRC"' EXIT
git -C "$REPO" archive "$BASELINE" mosqa cli | tar -x -C "$BASE_SRC"

# Every degradation range as it was before issue 14 (recorded RIRs only, no tandem codecs, ...).
read -r -d "" -a NARROW < recipes/conf/simulate_narrow_ranges.args || true

run() {  # NAME: one simulation of that configuration; appends "clips/s wall-seconds" to NAME.times
    local name=$1 code=$REPO start
    local extra=()
    case $name in
        baseline) code=$BASE_SRC ;;
        current_narrow) extra=("${NARROW[@]}") ;;
        current_all_codecs) extra=(--codecs all) ;;
    esac
    echo "[$name] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    start=$(date +%s.%N)
    # --overwrite: a benchmark times a fresh run, not a resume. Run from the code's own folder: python -m
    # puts the working directory first on the path.
    (cd "$code" && PYTHONPATH="$code" "$PYTHON" -m cli.main simulate "$CORPUS/speech" \
        --noise-dir "$CORPUS/noise" --rir-dir "$CORPUS/rir" --out-dir "$OUT/$name" --max-utts "$UTTS" \
        --per-utt "$K" --seed 0 --jobs "$JOBS" --overwrite \
        --speaker-map ast_en_allison=allison,ast_es_allison=allison ${extra[@]+"${extra[@]}"}) \
        >"$OUT/$name.log" 2>&1 || { cat "$OUT/$name.log"; exit 1; }
    "$PYTHON" -c 'import json, sys, time; s = json.load(open(sys.argv[1]))
print(s["clips_per_second"], time.time() - float(sys.argv[2]))' "$OUT/$name/summary.json" "$start" \
        >>"$OUT/$name.times"
}

NAMES=(baseline current current_narrow current_all_codecs)
echo "machine: $(nproc) cores; jobs $JOBS; $UTTS utterances x $K from $CORPUS; baseline $BASELINE;" \
     "$ROUNDS rounds"
for ((round = 0; round < ROUNDS; round++)); do
    if ((round % 2)); then order=(current_all_codecs current_narrow current baseline); else order=("${NAMES[@]}"); fi
    for name in "${order[@]}"; do run "$name"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" - "$OUT" "${NAMES[@]}" <<'PY'
import json, sys
from pathlib import Path

import numpy as np

out, names = Path(sys.argv[1]), sys.argv[2:]
rows = {}
for name in names:
    times = np.loadtxt(out / f"{name}.times", ndmin=2)
    s = json.loads((out / name / "summary.json").read_text())
    rate, wall = times[:, 0].mean(), (s["new_clips"] / times[:, 1]).mean()
    rows[name] = rate, wall
    print(f"{name:18s} clips {s['clips']:4d}  clips/s {rate:6.2f} (runs {' '.join(f'{r:.2f}' for r in times[:, 0])})"
          f"  wall clips/s {wall:6.2f}  PESQ mean {s['pesq_mean']:.2f} sd {s['pesq_std']:.2f}"
          f"  codecs: mulaw {' '.join(s['codecs'])}")
b = rows["baseline"]
for name, what in (("current_narrow", "current, the baseline's (narrow) ranges"),
                   ("current", "current, the wider default ranges"),
                   ("current_all_codecs", "current, wider ranges, --codecs all")):
    r = rows[name]
    print(f"speed-up vs baseline, {what}: {r[0] / b[0]:.2f}x (wall {r[1] / b[1]:.2f}x)")
c, n = rows["current"], rows["current_narrow"]
print(f"cost of the wider ranges: {100 * (1 - c[0] / n[0]):.0f} % of clips/s (wall {100 * (1 - c[1] / n[1]):.0f} %)")
PY
