#!/usr/bin/env bash
# Simulation throughput: this code against the baseline (commit 108b63e, before the speed work) on the
# same input in one run, then this code with the pre-issue-14 (narrow) ranges, so both the speed-up
# and the cost of the wider ranges are measured under the same machine load.
#   SIM_BENCH_UTTS=60   clean utterances (a seeded subset spread over all speakers)
#   SIM_BENCH_K=4       degraded versions per utterance
#   CORPUS=../shared/corpus (relative to the repository)   JOBS=$(nproc)   BASELINE=108b63e
#   PYTHON=python       an interpreter with mosqa's dependencies (make bench puts .venv first on PATH)
# ast_en_allison and ast_es_allison are the same voice talent: --speaker-map gives them one speaker id.
# clips/s = new clips / seconds of the simulation itself (as summary.json reports it); "wall" also counts
# Python start-up, the file search and the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CORPUS=${CORPUS:-../shared/corpus}
UTTS=${SIM_BENCH_UTTS:-60}
K=${SIM_BENCH_K:-4}
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
BASE_SRC=$(mktemp -d)
trap 'rm -rf "$BASE_SRC"' EXIT
git -C "$REPO" archive "$BASELINE" mosqa cli | tar -x -C "$BASE_SRC"

# Every degradation range as it was before issue 14 (recorded RIRs only, no tandem codecs, ...).
NARROW=(--drr-range 3,30 --synthetic-rooms 0 --clip-range 0.3,0.95 --band-high-range 1000,6000
        --band-low-range 0,0 --loss-range 0.002,0.08 --burst-range 2,2 --tandem-prob 0
        --combine-probs 0.8,0.15,0.05)

run() {  # NAME CODE_DIR [extra simulate options]
    local name=$1 code=$2
    shift 2
    echo "[$name] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local start
    start=$(date +%s.%N)
    # --overwrite: a benchmark times a fresh run, not a resume. Run from the code's own folder: python -m
    # puts the working directory first on the path.
    (cd "$code" && PYTHONPATH="$code" "$PYTHON" -m cli.main simulate "$CORPUS/speech" --noise-dir "$CORPUS/noise" \
        --rir-dir "$CORPUS/rir" --out-dir "$OUT/$name" --max-utts "$UTTS" --per-utt "$K" --seed 0 \
        --jobs "$JOBS" --overwrite --speaker-map ast_en_allison=allison,ast_es_allison=allison "$@") \
        >"$OUT/$name.log" 2>&1 || { cat "$OUT/$name.log"; exit 1; }
    echo "$start $(date +%s.%N)" >"$OUT/$name.wall"
}

echo "machine: $(nproc) cores; jobs $JOBS; $UTTS utterances x $K from $CORPUS; baseline $BASELINE"
run baseline "$BASE_SRC"
run current "$REPO"
run current_narrow "$REPO" "${NARROW[@]}"
run current_all_codecs "$REPO" --codecs all
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for name in ("baseline", "current", "current_narrow", "current_all_codecs"):
    s = json.loads((out / name / "summary.json").read_text())
    start, end = map(float, (out / f"{name}.wall").read_text().split())
    wall = end - start
    rows[name] = (s["clips_per_second"], s["new_clips"] / wall)
    print(f"{name:15s} clips {s['clips']:4d}  clips/s {s['clips_per_second']:6.2f}  wall clips/s "
          f"{s['new_clips'] / wall:6.2f}  PESQ mean {s['pesq_mean']:.2f} sd {s['pesq_std']:.2f}  "
          f"codecs: mulaw {' '.join(s['codecs'])}")
b, c, n = rows["baseline"], rows["current"], rows["current_narrow"]
print(f"speed-up, current vs baseline (same ranges as the baseline's): {n[0] / b[0]:.2f}x "
      f"(wall {n[1] / b[1]:.2f}x)")
print(f"speed-up, current with the wider default ranges vs baseline: {c[0] / b[0]:.2f}x "
      f"(wall {c[1] / b[1]:.2f}x)")
a = rows["current_all_codecs"]
print(f"speed-up, current with --codecs all (ffmpeg-program codecs too) vs baseline: {a[0] / b[0]:.2f}x "
      f"(wall {a[1] / b[1]:.2f}x)")
print(f"cost of the wider ranges: {100 * (1 - c[0] / n[0]):+.0f} % clips/s (wall {100 * (1 - c[1] / n[1]):+.0f} %)")
PY
