#!/usr/bin/env bash
# `mosqa predict` speed on one CPU thread, torch and onnx engines (both float32; every score column
# compared), and its files/s against `mosqa dnsmos` on the same 10 s clips, in one run.
#   N=100 (clips of 10 s, built from $CORPUS/speech as bench_dnsmos.sh builds them)
#   MODEL=pesq-wb (a shipped name or a train-qa run directory with a model.onnx)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100}
CORPUS=${CORPUS:-../shared/corpus}
MODEL=${MODEL:-pesq-wb}
OUT=${BENCH_OUT:-bench_out}/dnsmos
if [ ! -f "$OUT/clips_$N/list.txt" ]; then
  echo "building $N clips of 10 s from $CORPUS"
  python recipes/bench/dnsmos_reference.py clips "$CORPUS" "$OUT/clips_$N" "$N"
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python recipes/bench/bench_predict.py "$OUT/clips_$N/list.txt" --model "$MODEL"
