#!/usr/bin/env bash
# Issue 19: pick the campaign's model at equal budget before the campaign starts. Every candidate gets
# the same wall time (BUDGET_MIN on 2 threads) on the same simulated shard, and is scored on clips of
# unseen voices, noise files and rooms (the campaign's split, recipes/campaign/campaign_split.py).
#
#   bash recipes/bench/pick_qa_model.sh                 # stages 0-3
#   stage=3 bash recipes/bench/pick_qa_model.sh         # only the table
#
# Stages: 0 split + simulate the scout shard and validation clips | 1 frozen-encoder features (timed) |
# 2 train-qa candidates from scratch, each under `timeout BUDGET_MIN` | 3 the table (pick_qa_model.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

CORPUS=${CORPUS:-../shared/corpus}
CAMPAIGN=${CAMPAIGN:-exp/campaign}
OUT=${OUT:-$CAMPAIGN/scout}
BUDGET_MIN=${BUDGET_MIN:-8}
CLIPS=${CLIPS:-1000}      # utterances of the scout shard, 2 clips each
CONFS=${CONFS:-"nisqa cnnA_cp_qn_adrop02"}
stage=${stage:-0}
stop_stage=${stop_stage:-3}
in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if in_stage 0; then
  echo "stage 0: split, and simulate $((2 * CLIPS)) training clips and the validation clips"
  stage=0 stop_stage=0 bash recipes/campaign_qa.sh
  for part in train valid; do
    seed=$([ $part = train ] && echo 101 || echo 102)
    mosqa simulate "$CAMPAIGN/split/$part/speech" --noise-dir "$CAMPAIGN/split/${part}_noise.list" \
      --rir-dir "$CAMPAIGN/split/${part}_rir.list" --out-dir "$OUT/sim_$part" --per-utt 2 \
      --max-utts "$CLIPS" --seed "$seed" --jobs 2
  done
fi

if in_stage 1; then
  echo "stage 1: frozen-encoder features of both sets (the training set's time goes into the table)"
  python - "$OUT" <<'PY'
import json, sys, time
from pathlib import Path
from mosqa import campaign
out = Path(sys.argv[1])
if __name__ == "__main__":
    seconds = {}
    for part in ("valid", "train"):
        paths, _, _ = campaign.read_set(out / f"sim_{part}")
        start = time.monotonic()
        campaign.extract_features(paths, out / f"feat_sim_{part}", jobs=2)
        seconds[f"{part}_seconds"] = time.monotonic() - start
    (out / "extract.json").write_text(json.dumps(seconds))
PY
fi

if in_stage 2; then
  echo "stage 2: $CONFS from scratch, $BUDGET_MIN min each"
  for conf in $CONFS; do
    [ -d "$OUT/runs/$conf" ] && continue
    timeout "${BUDGET_MIN}m" mosqa train-qa -c "recipes/conf/$conf.yaml" --train "$OUT/sim_train/all.list" \
      --valid "$OUT/sim_valid/all.list" --exp-dir "$OUT/runs" --name "$conf" --epochs 100 --threads 2 \
      --patience 0 --scheduler none > "$OUT/runs_$conf.log" 2>&1 || true
  done
fi

if in_stage 3; then
  echo "stage 3: the table"
  python recipes/bench/pick_qa_model.py --train "$OUT/sim_train" --valid "$OUT/sim_valid" --features "$OUT" \
    --extract-log "$OUT/extract.json" --budget-s $((BUDGET_MIN * 60)) --out "$OUT/pick.md" \
    --runs $(for c in $CONFS; do compgen -G "$OUT/runs/$c*/" | head -1; done)
fi
