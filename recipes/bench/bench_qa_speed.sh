#!/usr/bin/env bash
# Quality-model speed at every clip length on one CPU thread, beside `mosqa dnsmos` (issue 19: the default
# model must run at least 30x real time on one thread at any length). Prints a table, writes a CSV.
#   MODELS=pesq-wb,pesq-wb-nisqa  LENGTHS=1,3,8,30,120  SECONDS=60 (audio per length)
#   SPEECH=mosqa/speech (the built-in voices; any folder of speech files)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-pesq-wb,pesq-wb-nisqa}
LENGTHS=${LENGTHS:-1,3,8,30,120}
SECONDS_PER_LENGTH=${SECONDS:-60}
SPEECH=${SPEECH:-mosqa/speech}
OUT=${BENCH_OUT:-bench_out}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python recipes/bench/bench_qa_speed.py "$SPEECH" --models "$MODELS" \
  --lengths "$LENGTHS" --seconds "$SECONDS_PER_LENGTH" --out "$OUT/qa_speed.csv"
