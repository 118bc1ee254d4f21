#!/usr/bin/env bash
# Re-run the experiment log's quality-model experiments (one recipes/conf/*.yaml each) and end
# with one comparison table, as the log reports them (run, what changed, mse, lcc, srcc).
#
#   bash recipes/qa_log.sh DATA [EXP_DIR]
#     DATA: a `mosqa prepare-list` output folder holding wav_train_qn.list, wav_train_qn_rs.list
#           (score-balanced, the log's wav_train_qn_rs2.list), wav_valid_qn.list, wav_test_qn.list;
#           or a list file, which stage 0 splits and balances into EXP_DIR/lists.
#   EPOCHS=20 stage=4 stop_stage=6 EXTRA="--device cuda --amp" bash recipes/qa_log.sh lists/
#
# Stages: 0 prepare lists | 1 HASA local mask x normalised output, cp | 2 classifier heads and
# losses | 3 architectures on the balanced list | 4 CnnMAttn sweep | 5 classifiers on the balanced
# list | 6 CRN C/LSTM/trans sweep | 7 evaluate everything on the test list.
# A finished run (best.pt present) is skipped, so rerunning resumes where the recipe stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${1:?usage: recipes/qa_log.sh DATA [EXP_DIR]}
exp=${2:-exp/qa_log}
EPOCHS=${EPOCHS:-20}
EXTRA=${EXTRA:-}
stage=${stage:-0}
stop_stage=${stop_stage:-7}

lists=$data
if [ -f "$data" ]; then lists=$exp/lists; fi
train=$lists/wav_train_qn.list
balanced=$lists/wav_train_qn_rs.list
valid=$lists/wav_valid_qn.list
test=$lists/wav_test_qn.list

run() {  # run CONF TRAIN_LIST [more train-qa flags]
  local conf=$1 list=$2
  shift 2
  if compgen -G "$exp/${conf}2*/best.pt" > /dev/null; then echo "  $conf: done, skipped"; return; fi
  # shellcheck disable=SC2086
  mosqa train-qa -c "recipes/conf/$conf.yaml" --train "$list" --valid "$valid" --exp-dir "$exp" \
    --name "$conf" --epochs "$EPOCHS" $EXTRA "$@"
}
in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if in_stage 0 && [ -f "$data" ]; then
  echo "stage 0: split $data by speaker and balance the training scores"
  mosqa prepare-list "$data" --out-dir "$lists" --seed 0
fi

if in_stage 1; then
  echo "stage 1: HASA, local mask x normalised output, compressed input (unbalanced list)"
  for c in hasa_localmask_norm hasa_localmask_raw hasa_nomask_raw hasa_nomask_norm hasa_cp; do run $c "$train"; done
fi

if in_stage 2; then
  echo "stage 2: classifier heads, cross-entropy vs EDM, loss weights, optimiser (unbalanced list)"
  for c in can2dClass_ce can2dClass_edm_rmsprop can2dClass_10mse_ce lstmcanClass_edm lstmcanClass_10mse_ce; do
    run $c "$train"
  done
fi

if in_stage 3; then
  echo "stage 3: architectures on the balanced list, cp input, normalised output"
  for c in cnnA_cp_qn hasa_cp_qn_conv1d hasa_cp_qn hasa_cp_qn_rmsprop hasa_cp_qn_framenorm hasa_cp_qn_noframe \
           hasa_cp_qn_timepool cnn_cp_qn; do
    run $c "$balanced"
  done
fi

if in_stage 4; then
  echo "stage 4: CnnMAttn sweep (conv kernel, prepare block, attention dropout, hardsigmoid, epochs)"
  for c in cnnA_cp_qn_k2 cnnA_cp_qn_bn cnnA_cp_qn_conv2 cnnA_cp_qn_pk4 cnnA_cp_qn_pk4_l4 cnnA_cp_qn_pk7_l4 \
           cnnA_cp_qn_pk3_l4 cnnA_cp_qn_dil2 cnnA_cp_qn_adrop02 cnnA_cp_qn_adrop03 cnnA_cp_qn_hardsigmoid; do
    run $c "$balanced"
  done
  run cnnA_cp_qn_5ep "$balanced" --epochs $(( EPOCHS / 4 > 0 ? EPOCHS / 4 : 1 ))
fi

if in_stage 5; then
  echo "stage 5: classifiers on the balanced list (CE, EDM with and without root, frame EDM, step)"
  for c in hasaClass_cp_qn_ce hasaClass_cp_qn_nohidden hasaClass_cp_qn_nolayernorm hasaClass_cp_qn_ceonly \
           hasaClass_cp_qn_edm_2x hasaClass_cp_qn_edm_mse_2x hasaClass_cp_qn_edm_mse \
           hasaClass_cp_qn_edmroot_mse hasaClass_cp_qn_frameedm hasaClass_cp_qn_step05 \
           hasaClass_cp_qn_step05_raw can2dClass_cp_qn cnnClass_cp_qn_edmroot; do
    run $c "$balanced"
  done
fi

if in_stage 6; then
  echo "stage 6: CRN channels, LSTM hidden size and trans width"
  for c in crn_cp_qn_C256 crn_cp_qn_C128 crn_cp_qn_C512_L512 crn_cp_qn_C256_L128_T256 crn_cp_qn_C256_L128_T128 \
           crn_cp_qn_C256_L128_T512 crn_cp_qn_C256_L64_T128; do
    run $c "$balanced"
  done
fi

if in_stage 7; then
  echo "stage 7: every run on the test list, one comparison table"
  mosqa eval-qa "$exp"/*2*/ --list "$test" --out-dir "$exp/eval" --table "$exp/eval/compare_test.csv"
fi
