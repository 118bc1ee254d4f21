#!/usr/bin/env bash
# Enhancement benchmark on the real corpus (/work/shared/corpus), sized for <= 30 min on 2 CPU cores:
# the se_log.sh table (noisy input, lstm x3, dpcrn none/frozen/grl/joint) on held-out speakers and
# noises: train = ast_en/es_allison, ast_it_carlo, arctic_aew/axb with 5 noises; test = every 6th
# ast_fr_june prompt + arctic_unk_m (unseen voices) with running_tap, sb_noise2, sb_noise3 (unseen
# noises), SNR 0-15 dB. The quality model is trained on a corpus simulated from the training speakers
# only (or pass QA_RUN). Budget knobs: SE_ARGS, LSTM_ARGS, DPCRN_ARGS, QA_ARGS (see se_log.sh).
set -euo pipefail
CORPUS=${CORPUS:-/work/shared/corpus}
OUT=${OUT:-bench_out/se}
mkdir -p "$OUT"
[ -d "$CORPUS/speech" ] || { echo "bench_se: no corpus at $CORPUS (set CORPUS)" >&2; exit 2; }

TRAIN_SPK="ast_en_allison ast_es_allison ast_it_carlo arctic_aew arctic_axb"
for s in $TRAIN_SPK; do ls "$CORPUS/speech/$s/"*.flac; done > "$OUT/train_clean.txt"
{ ls "$CORPUS/speech/ast_fr_june/"*.flac | awk 'NR % 6 == 0'; ls "$CORPUS/speech/arctic_unk_m/"*.flac; } \
    > "$OUT/test_clean.txt"
printf "$CORPUS/noise/%s.flac\n" doing_the_dishes exercise_bike sb_noise1 sb_noise4 sb_noise5 > "$OUT/train_noise.txt"
printf "$CORPUS/noise/%s.flac\n" running_tap sb_noise2 sb_noise3 > "$OUT/test_noise.txt"

if [ -z "${QA_RUN:-}" ]; then
    # simulate reads speaker folders: link the training speakers and noises only (nothing from the test set)
    rm -rf "$OUT/qa_clean" "$OUT/qa_noise" && mkdir -p "$OUT/qa_clean" "$OUT/qa_noise"
    for s in $TRAIN_SPK; do mkdir -p "$OUT/qa_clean/$s" && ln -s "$CORPUS/speech/$s/"*.flac "$OUT/qa_clean/$s/"; done
    xargs -a "$OUT/train_noise.txt" ln -s -t "$OUT/qa_noise"
    mosqa simulate "$OUT/qa_clean" --noise-dir "$OUT/qa_noise" --out-dir "$OUT/qa_sim" --per-utt 2 \
        --max-utts "${QA_MAX_UTTS:-200}" --seed 0 --speaker-map ast_en_allison=allison,ast_es_allison=allison \
        --no-codecs --overwrite
    mosqa prepare-list "$OUT/qa_sim/all.list" --out-dir "$OUT/qa_lists" --seed 0
    read -r -a QA_EXTRA <<< "${QA_ARGS:---epochs 6 --batch-size 16}"
    mosqa train-qa --train "$OUT/qa_lists/wav_train_qn.list" --valid "$OUT/qa_lists/wav_valid_qn.list" \
        --arch cnnA --compress 0.5 --exp-dir "$OUT" --name qa_cnnA_cp_qn --device cpu "${QA_EXTRA[@]}"
    QA_RUN=$(ls -d "$OUT"/qa_cnnA_cp_qn* | tail -n 1)
fi

EXP="$OUT" QA_RUN="$QA_RUN" CLEAN="$OUT/train_clean.txt" NOISE="$OUT/train_noise.txt" \
VALID_CLEAN="$OUT/test_clean.txt" VALID_NOISE="$OUT/test_noise.txt" \
SE_ARGS="${SE_ARGS:---device cpu --snr-min 0 --snr-max 15 --crop-seconds 1 --batch-size 4 --lr 0.002 --patience 0}" \
LSTM_ARGS="${LSTM_ARGS:---epochs 1 --epoch-items 600}" \
DPCRN_ARGS="${DPCRN_ARGS:---epochs 2 --epoch-items 160}" \
    bash recipes/se_log.sh
