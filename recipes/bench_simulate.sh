#!/usr/bin/env bash
# Simulation throughput and label spread on the real DEV corpus (speech/noise/rir folders).
#   SIM_BENCH_UTTS=60   clean utterances (a seeded subset spread over all speakers)
#   SIM_BENCH_K=4       degraded versions per utterance
#   CORPUS=../shared/corpus (beside the repository)   JOBS=$(nproc)
# ast_en_allison and ast_es_allison are the same voice talent: --speaker-map gives them one speaker
# id, so prepare-list never splits her across train and test. speech_commands holds many
# contributors but is one folder, so it counts as one speaker here (conservative for splitting).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=$(realpath -m "${CORPUS:-../shared/corpus}")  # beside the repository; absolute, as links point into it
UTTS=${SIM_BENCH_UTTS:-60}
K=${SIM_BENCH_K:-4}
JOBS=${JOBS:-$(nproc)}
OUT=${BENCH_OUT:-bench_out}/simulate

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); jobs $JOBS"
# --overwrite: a benchmark times a fresh run, not a resume.
mosqa simulate "$CORPUS/speech" --noise-dir "$CORPUS/noise" --rir-dir "$CORPUS/rir" --out-dir "$OUT" \
    --max-utts "$UTTS" --per-utt "$K" --seed 0 --jobs "$JOBS" --overwrite \
    --speaker-map ast_en_allison=allison,ast_es_allison=allison
python - "$OUT/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"clips {s['clips']}  new {s['new_clips']}  seconds {s['seconds']:.1f}  "
      f"clips/s {s['clips_per_second']:.2f}  skipped {s['skipped']}")
print(f"PESQ mean {s['pesq_mean']:.2f} sd {s['pesq_std']:.2f} range {s['pesq_min']:.2f}..{s['pesq_max']:.2f}")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
