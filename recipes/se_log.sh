#!/usr/bin/env bash
# The experiment log's enhancement runs, each validated on the same held-out set, ending in one table:
#   quality model (train-qa on a simulated corpus, or QA_RUN) -> lstm softplus / sigmoid / IAM
#   -> dpcrn with --qa none / frozen / grl / joint -> `mosqa enhance --compare` (PESQ, STOI, DNSMOS).
# Data (environment):
#   TRAIN_LIST + VALID_LIST   noisy,clean[,score] lists, or
#   CLEAN + NOISE + VALID_CLEAN + VALID_NOISE   folders/lists mixed on the fly (RIR optional)
#   QA_RUN      an existing train-qa run (16 kHz); otherwise one is trained on a corpus simulated
#               from QA_CLEAN_DIR (default: the built-in speech)
#   SE_ARGS     extra train-se flags for every run (budget, e.g. "--epochs 5 --epoch-items 256")
#   LSTM_ARGS / DPCRN_ARGS / QA_ARGS   extra flags for those runs only
#   JOBS        enhancers trained at once (default 1; give each --threads via SE_ARGS)
# Run from the repository root with `mosqa` on PATH.
set -euo pipefail
EXP=${EXP:-exp_se}
mkdir -p "$EXP"

if [ -n "${TRAIN_LIST:-}" ]; then
    DATA=(--train "$TRAIN_LIST" --valid "$VALID_LIST")
else
    DATA=(--clean "$CLEAN" --noise "$NOISE" --valid-clean "$VALID_CLEAN" --valid-noise "$VALID_NOISE")
    [ -n "${RIR:-}" ] && DATA+=(--rir "$RIR")
fi
read -r -a SE_EXTRA <<< "${SE_ARGS:-}"
read -r -a LSTM_EXTRA <<< "${LSTM_ARGS:-}"
read -r -a DPCRN_EXTRA <<< "${DPCRN_ARGS:-}"
read -r -a QA_EXTRA <<< "${QA_ARGS:-}"

JOBS=${JOBS:-1}
mkdir -p "$EXP/logs"
TAGS=()
PIDS=()
se() {  # start training one enhancer (at most JOBS at once); its stdout log ends with its run directory
    local tag=$1
    shift
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done  # failures are reported below
    echo "   $tag: log in $EXP/logs/$tag.log"
    mosqa train-se "${DATA[@]}" --exp-dir "$EXP" "${SE_EXTRA[@]}" "$@" > "$EXP/logs/$tag.log" 2> "$EXP/logs/$tag.err" &
    TAGS+=("$tag")
    PIDS+=($!)
}

echo "== 1. quality model"
if [ -z "${QA_RUN:-}" ]; then
    if [ -n "${QA_CLEAN_DIR:-}" ]; then SRC=("$QA_CLEAN_DIR"); else SRC=(--builtin); fi
    mosqa simulate "${SRC[@]}" --out-dir "$EXP/qa_sim" --per-utt "${QA_PER_UTT:-4}" --seed 0 \
        ${QA_MAX_UTTS:+--max-utts "$QA_MAX_UTTS"}
    mosqa prepare-list "$EXP/qa_sim/all.list" --out-dir "$EXP/qa_lists" --seed 0
    mosqa train-qa --train "$EXP/qa_lists/wav_train_qn_rs.list" --valid "$EXP/qa_lists/wav_valid_qn.list" \
        --arch cnnA --compress 0.5 --exp-dir "$EXP" --name qa_cnnA_cp_qn "${QA_EXTRA[@]}"
    QA_RUN=$(ls -d "$EXP"/qa_cnnA_cp_qn* | tail -n 1)
fi
echo "quality model: $QA_RUN"

echo "== 2. dpcrn: spectral baseline, then frozen / grl / joint quality guidance"
se dpcrn_se -c recipes/conf/se_dpcrn.yaml "${DPCRN_EXTRA[@]}"
for mode in frozen grl joint; do
    se "dpcrn_$mode" -c recipes/conf/se_dpcrn.yaml --qa "$mode" --qa-model "$QA_RUN" "${DPCRN_EXTRA[@]}"
done

echo "== 3. lstm_se: softplus mask, sigmoid mask, IAM target"
se lstm_se -c recipes/conf/se_lstm.yaml --mask-act softplus "${LSTM_EXTRA[@]}"
se lstm_se_sigmoid -c recipes/conf/se_lstm.yaml --mask-act sigmoid --name lstm_se_sigmoid "${LSTM_EXTRA[@]}"
se lstm_se_IAM -c recipes/conf/se_lstm.yaml --mask-act sigmoid --target iam "${LSTM_EXTRA[@]}"

RUNS=()
for i in "${!PIDS[@]}"; do
    wait "${PIDS[$i]}" || { echo "${TAGS[$i]} failed; see $EXP/logs/${TAGS[$i]}.err" >&2; exit 1; }
    RUNS+=("$(tail -n 1 "$EXP/logs/${TAGS[$i]}.log")")
done

echo "== 4. one table (noisy input first); CSV in $EXP/compare.csv"
mosqa enhance --compare "${RUNS[@]}" --out-dir "$EXP"
