#!/usr/bin/env bash
# End-to-end demo on the built-in data (nothing to download), in numbered stages:
#   1 simulate a PESQ-labelled corpus from the espeak-ng speech shipped in mosqa/speech/
#   2 validate, split by speaker (spk6 never seen in training) and balance the train list
#   3 train a small CRN quality model          4 evaluate it on the unseen speaker
#   5 train a tiny enhancer guided by that quality model (--qa frozen)
#   6 enhance held-out noisy files and score them with DNSMOS
# Run from the repository root with `mosqa` on PATH (`make demo` does both); writes under ./demo/.
# `stage=3 bash recipes/demo.sh` starts from stage 3.
set -euo pipefail
DEMO=${DEMO_DIR:-demo}
SEED=${SEED:-0}
stage=${stage:-1}

if [ "$stage" -le 1 ]; then
  echo "== 1. simulate: 36 built-in utterances x 6 degraded versions, labelled by wideband PESQ"
  mosqa simulate --builtin --out-dir "$DEMO/sim" --per-utt 6 --seed "$SEED"
fi

if [ "$stage" -le 2 ]; then
  echo "== 2. prepare-list: check every file, split by speaker (spk6 = unseen test speaker), balance train"
  mosqa prepare-list "$DEMO/sim/all.list" --out-dir "$DEMO/lists" --seed "$SEED" --test-groups spk6 \
      --bin-width 0.25
fi

if [ "$stage" -le 3 ]; then
  echo "== 3. train-qa: a small CRN on compressed magnitudes (recipes/conf/demo_qa.yaml)"
  mosqa train-qa -c recipes/conf/demo_qa.yaml --train "$DEMO/lists/wav_train_qn_rs.list" \
      --valid "$DEMO/lists/wav_valid_qn.list" --exp-dir "$DEMO/exp" --seed "$SEED" --threads 1 \
      | tail -n 1 > "$DEMO/qa_run.txt"
fi
QA_RUN=$(cat "$DEMO/qa_run.txt")

if [ "$stage" -le 4 ]; then
  echo "== 4. eval-qa: $QA_RUN on the unseen speaker"
  mosqa eval-qa "$QA_RUN" --list "$DEMO/lists/wav_test_qn.list" --out-dir "$DEMO/eval"
fi

if [ "$stage" -le 5 ]; then
  echo "== 5. train-se: a tiny LSTM mask enhancer, guided by the quality model (frozen)"
  head -n 8 "$DEMO/sim/pairs.list" > "$DEMO/sim/se_valid.list"
  tail -n +9 "$DEMO/sim/pairs.list" > "$DEMO/sim/se_train.list"
  mosqa train-se -c recipes/conf/se_demo.yaml --train "$DEMO/sim/se_train.list" \
      --valid "$DEMO/sim/se_valid.list" --exp-dir "$DEMO/exp" --qa frozen --qa-model "$QA_RUN" \
      | tail -n 1 > "$DEMO/se_run.txt"
fi
SE_RUN=$(cat "$DEMO/se_run.txt")

if [ "$stage" -le 6 ]; then
  echo "== 6. enhance the held-out noisy files and score them with DNSMOS"
  mosqa enhance "$SE_RUN" "$DEMO/sim/se_valid.list" --out-dir "$DEMO/enhanced" --score --device cpu
  echo "demo done: lists in $DEMO/lists, runs in $DEMO/exp, enhanced audio and dnsmos.csv in $DEMO/enhanced"
fi
