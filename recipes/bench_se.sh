#!/usr/bin/env bash
# Enhancement benchmark on the real corpus (CORPUS, default ../shared/corpus beside the repository):
# the se_log.sh table (noisy input, lstm x3, dpcrn none/frozen/grl/joint) on held-out speakers and
# noises. Train = ast_en/es_allison, ast_it_carlo, arctic_aew/axb with 5 recorded noises plus mosqa's generated white/pink/brown/babble
# noise (more noise variety is what carries an enhancer to unseen noises); test = every 6th
# ast_fr_june prompt + arctic_unk_m (unseen voices) with running_tap, sb_noise2, sb_noise3 (unseen
# noises), SNR 0-15 dB. The quality model (crn) is trained on a corpus simulated from the training
# speakers and noises only (or pass QA_RUN). Each dpcrn run gets 1,200 steps of 4 x 1 s crops with a
# cosine learning rate, about 45 minutes on one core; JOBS (default 2) runs train side by side with one
# thread each, so the table takes about 2 hours on a 2-core machine. Budget knobs: SE_ARGS, LSTM_ARGS,
# DPCRN_ARGS, QA_ARGS (see se_log.sh).
set -euo pipefail
# beside the repository; absolute, as links point into it
CORPUS=$(realpath -m "${CORPUS:-$(dirname "$0")/../../shared/corpus}")
OUT=${OUT:-bench_out/se}
mkdir -p "$OUT"
[ -d "$CORPUS/speech" ] || { echo "bench_se: no corpus at $CORPUS (set CORPUS)" >&2; exit 2; }

TRAIN_SPK="ast_en_allison ast_es_allison ast_it_carlo arctic_aew arctic_axb"
for s in $TRAIN_SPK; do ls "$CORPUS/speech/$s/"*.flac; done > "$OUT/train_clean.txt"
{ ls "$CORPUS/speech/ast_fr_june/"*.flac | awk 'NR % 6 == 0'; ls "$CORPUS/speech/arctic_unk_m/"*.flac; } \
    > "$OUT/test_clean.txt"
printf "$CORPUS/noise/%s.flac\n" doing_the_dishes exercise_bike sb_noise1 sb_noise4 sb_noise5 > "$OUT/train_noise.txt"
mkdir -p "$OUT/gen_noise"
python - "$OUT/gen_noise" <<'PY'
import sys
from mosqa.audio import write_audio
from mosqa.defaults import generated_noises
for name, wav in generated_noises(seconds=60.0).items():
    write_audio(f"{sys.argv[1]}/{name}.wav", wav, 16000)
PY
{ cat "$OUT/train_noise.txt"; ls "$PWD/$OUT/gen_noise/"*.wav; } > "$OUT/train_noise_aug.txt"
printf "$CORPUS/noise/%s.flac\n" running_tap sb_noise2 sb_noise3 > "$OUT/test_noise.txt"

if [ -z "${QA_RUN:-}" ]; then
    # simulate reads speaker folders: link the training speakers and noises only (nothing from the test set)
    rm -rf "$OUT/qa_clean" "$OUT/qa_noise" && mkdir -p "$OUT/qa_clean" "$OUT/qa_noise"
    for s in $TRAIN_SPK; do mkdir -p "$OUT/qa_clean/$s" && ln -s "$CORPUS/speech/$s/"*.flac "$OUT/qa_clean/$s/"; done
    xargs -a "$OUT/train_noise.txt" ln -s -t "$OUT/qa_noise"
    mosqa simulate "$OUT/qa_clean" --noise-dir "$OUT/qa_noise" --out-dir "$OUT/qa_sim" --per-utt 2 \
        ${QA_MAX_UTTS:+--max-utts "$QA_MAX_UTTS"} --seed 0 --speaker-map ast_en_allison=allison,ast_es_allison=allison \
        --no-codecs --overwrite
    mosqa prepare-list "$OUT/qa_sim/all.list" --out-dir "$OUT/qa_lists" --seed 0
    read -r -a QA_EXTRA <<< "${QA_ARGS:---epochs 10 --batch-size 16 --threads 1}"
    mosqa train-qa -c recipes/conf/crn_cp_qn_C256_L128_T256.yaml --train "$OUT/qa_lists/wav_train_qn_rs.list" \
        --valid "$OUT/qa_lists/wav_valid_qn.list" --exp-dir "$OUT" --name qa_crn --device cpu \
        --cache-dir "$OUT/qa_cache" "${QA_EXTRA[@]}"
    QA_RUN=$(ls -d "$OUT"/qa_crn2* | tail -n 1)
fi

JOBS=${JOBS:-2} EXP="$OUT" QA_RUN="$QA_RUN" CLEAN="$OUT/train_clean.txt" NOISE="$OUT/train_noise_aug.txt" \
VALID_CLEAN="$OUT/test_clean.txt" VALID_NOISE="$OUT/test_noise.txt" \
SE_ARGS="${SE_ARGS:---device cpu --threads 1 --snr-min 0 --snr-max 15 --crop-seconds 1 --batch-size 4 --patience 0}" \
LSTM_ARGS="${LSTM_ARGS:---epochs 3 --epoch-items 400 --lr 0.001}" \
DPCRN_ARGS="${DPCRN_ARGS:---epochs 12 --epoch-items 400 --lr 0.002 --scheduler cosine}" \
    bash recipes/se_log.sh
