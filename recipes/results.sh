#!/usr/bin/env bash
# The README's "Results": the shipped quality model on voices it never heard, beside DNSMOS (zero-shot),
# per source and impairment kind; its scatter; and the QA campaign's curve when that recipe has made one.
# Small by default (a few minutes on 2 cores): PER_UTT degraded copies of every kept reference of the 60
# held-out test voices of recipes/pretrain_qa.sh (recipes/conf/pesq_wb_test_voices.txt), simulated with
# today's defaults. The figures and the table go to docs/results/ (committed, small).
#
#   bash recipes/results.sh                       # stage=N resumes from stage N
#   PER_UTT=3 JOBS=8 bash recipes/results.sh      # more clips
#
# Stages: 0 references (pretrain_qa.sh's stage 0) | 1 simulate the test voices | 2 eval-qa the model,
# DNSMOS the clips | 3 table, scatter and campaign curve into $DOCS
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${CORPUS:-../shared/corpus}
OUT=${OUT:-exp/results}
MODEL=${MODEL:-mosqa/pretrained/pesq-wb}
PER_UTT=${PER_UTT:-1}
SIM_SEED=${SIM_SEED:-0}
JOBS=${JOBS:-2}
DOCS=${DOCS:-docs/results}
# The QA campaign's curve (campaign.png), made by the campaign recipe; copied into $DOCS when present.
CAMPAIGN_PNG=${CAMPAIGN_PNG:-recipes/campaign/campaign.png}
stage=${stage:-0}

if [ "$stage" -le 0 ]; then
  CORPUS=$CORPUS OUT=$OUT stage=0 stop_stage=0 bash recipes/pretrain_qa.sh
fi

if [ "$stage" -le 1 ]; then
  echo "stage 1: $PER_UTT degraded copies of each reference of the held-out test voices"
  mkdir -p "$OUT/test_voices"
  for voice in $(tr ',' ' ' < recipes/conf/pesq_wb_test_voices.txt); do
    if [ -d "$OUT/references/speech/$voice" ]; then
      ln -sfn "$(realpath "$OUT/references/speech/$voice")" "$OUT/test_voices/$voice"
    fi
  done
  mosqa simulate "$OUT/test_voices" --noise-dir "$CORPUS/noise" --rir-dir "$CORPUS/rir" --out-dir "$OUT/sim" \
    --per-utt "$PER_UTT" --seed "$SIM_SEED" --jobs "$JOBS"
fi

if [ "$stage" -le 2 ]; then
  echo "stage 2: $MODEL and DNSMOS on the same clips"
  mosqa eval-qa "$MODEL" --list "$OUT/sim/all.list" --out-dir "$OUT/eval" --cache-dir "$OUT/cache" > /dev/null
  mosqa dnsmos --list "$OUT/sim/all.list" -o "$OUT/dnsmos.csv" -j "$JOBS" > /dev/null
fi

if [ "$stage" -le 3 ]; then
  echo "stage 3: the table and figures in $DOCS"
  mkdir -p "$DOCS"
  python recipes/tools/results.py --eval "$OUT/eval" --meta "$OUT/sim/meta.csv" --dnsmos "$OUT/dnsmos.csv" \
    --name "$(basename "$MODEL")" --out "$DOCS/results.md" --scatter "$DOCS/scatter_$(basename "$MODEL").png"
  if [ -f "$CAMPAIGN_PNG" ]; then
    cp "$CAMPAIGN_PNG" "$DOCS/campaign.png"
  else
    echo "no $CAMPAIGN_PNG yet (the QA campaign recipe makes it): $DOCS/campaign.png left as it is"
  fi
fi
