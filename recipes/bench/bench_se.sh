#!/usr/bin/env bash
# Does quality guidance make a better enhancer? The MetricGAN+ protocol on the real corpus (v2), issue 20's
# form: a learning critic (train-se --qa learn) against a control of the same length, >= 1,500 steps each;
# issue 31's arms: the shipped pesq-wb frozen and learning, and learning with a warmed-up critic:
#   0 split voices and noises: test voices and test noises are never trained on (nor validated on)
#   1 write the held-out test set: ITEMS mixtures (default 100, at most 6 s each) of test voices and test
#     noises, 0-15 dB SNR
#   2 train the dpcrn spectral baseline once (BASE_STEPS steps of 4 x 1 s crops, cosine learning rate), then
#     continue it on longer crops (baseline_long: LONG_STEPS steps of 4 x LONG_CROP s from its best.pt, lr
#     5e-4 cosine; train-se --init, as a run cannot change its crops on resume): the dpcrn's time LSTM sees
#     at most 1 s of history in training but whole files at test. The later stages start from baseline_long
#     (from baseline with LONG_STEPS=0): the base
#   3 pilot: PILOT_STEPS (250) steps from the base, seed PILOT_SEED, for each weight in PILOT_WEIGHTS
#     (0.03 0.1 0.3) and each mode in PILOT_MODES (pesq-wb frozen, pesq-wb learning), and a control of the
#     same length; each scored on the test set (as in 6) and kept under pilot/; the pilot's table and its
#     learning critics' LCC per epoch beside them, to commit ($KEEP/pilot/table.md, critic_watch.md). Each
#     mode's weight with the best validation PESQ (se_bench_table.py pick: chosen on validation, not on
#     the test set) makes its arm of stage 5: $KEEP/pilot/arms.txt
#   4 the warm critic: a ladder of enhancers, the snapshots of a LADDER_STEPS (1,200) step scratch run
#     (train-se --keep-every 1, one per epoch; early poor ones) and the base itself; the first seed of
#     the warm learning arm (WARM_TAG: the pilot's learning arm with --critic-warmup) warms its critic up
#     on their outputs (at most WARMUP_STEPS steps, until its LCC on the ladder's outputs for the
#     validation mixtures reaches WARMUP_LCC) and trains its first epoch; its critic_warm.pt, made once,
#     is the critic every seed of the arm starts from (the others through --critic-init)
#   5 fine-tune the base FT_STEPS steps (epochs of FT_EPOCH_STEPS, best epoch on validation), once per
#     guidance in GUIDES, the pilot's arms (stage 3) and the warm arm (stage 4), and once spectral-only
#     (the control), each from the same base checkpoint (train-se --init) with the same data order,
#     for every seed in SEEDS; each run is scored on the test set (as in 6) as soon as it is trained, and
#     kept (below); a run already scored and kept from the same base is not trained again (one kept from
#     another base stops the bench: move it aside to train it again)
#   6 score noisy input, spectral gating (noisereduce, the classic floor: pip install noisereduce), baseline,
#     baseline_long and every fine-tuned run not yet scored on the test set: PESQ, STOI, SI-SNR, DNSMOS
#     SIG/BAK/OVRL, the listener MOS (the Distill-MOS encoder's own head, predict's listener_mos), the
#     prediction of QA_MODEL (a non-intrusive quality model; each judge's error against true PESQ is in
#     the table) and, for a run whose critic learned, that critic's own prediction
#     (recipes/bench/se_bench_table.py score).
#     A score kept without the listener column gets that column alone where the run's weights are at hand
#   7 one table, mean ± sd over seeds and each run's paired difference to the control (Δ PESQ +0.123 ±
#     0.045), naming pesq-wb's campaign row: $KEEP/table.md (and .csv), to commit; the learning critics'
#     LCC against true PESQ per epoch (and a warm critic's before and after its warm-up):
#     $KEEP/critic_watch.md
# pesq-wb is refit by the campaign, so the bench pins it: the first stage that needs it copies the shipped
# model's head (config.yaml, best.pt, card; ~100 KB, the encoder is shared) into $KEEP/pesq_wb, and every
# pesq-wb run reads that copy (--qa-model $KEEP/pesq_wb); the table names its campaign row.
# Voices: speaker folders of $CORPUS/speech sorted by name (speech_commands left out: many 1 s voices);
# every 8th (4th, 12th ...) is a test voice, every 8th from the 7th a validation voice, the rest train
# (ast_en_allison and ast_es_allison, one person, both train). Test and validation utterances keep only
# recordings with a quiet floor (qc.csv floor_rel_db <= -35 dB, or none measured): a noisy reference caps
# PESQ. Noises: TEST_NOISES are held out; training adds mosqa's generated white/pink/brown/babble noise.
#
# Budget, measured 2026-12-01 on this 2-core machine while a third job shared it (one thread per run):
# a 200-step baseline epoch (4 x 1 s crops) with its validation takes 195-220 s; a 120-step fine-tune
# 200-305 s spectral-only or guided by pesq-wb (frozen, grl, joint), 250-340 s guided by DNSMOS; scoring
# one run on the 100 test files about 100 s. Issue 11's table: BASE_STEPS 3600, 120-step fine-tunes.
# Measured 2026-12-04 (issue 20's form): a baseline epoch alone on 2 threads 196-200 s, beside a 1-thread
# fine-tune 440-600 s; a 125-step fine-tune beside the baseline 330-370 s spectral-only, 430-470 s with
# the learning critic (--pesq-workers 1). So 1,500 steps x 3 seeds x 2 arms is about 4 h of one core:
# run stage 3 over two sessions (it resumes). Measured 2026-12-04 with two fine-tunes side by side (one
# thread each): a 250-step epoch with its validation 390-450 s for the control, 450-540 s for the learning
# intrusive critic; scoring a run on the 100 test files 90-120 s.
# Not yet measured (issue 31, estimates from the above): the pilot's 7 runs of 250 steps, 2 at a time, about
# 40 min; the ladder's 6 epochs about 20 min; a pesq-wb critic reads 16 s of audio per learning step
# through the Distill-MOS encoder (~17x real time on one thread), so a learning step takes ~1 s more than
# issue 20's and a 1,500-step pesq-wb run 1-2 h of one core: stage 5's 9 new runs want DEVICE=cuda.
# DEVICE=cuda for larger runs (bigger BASE_STEPS / FT_STEPS / SEEDS).
# Stages resume: `stage=N bash recipes/bench/bench_se.sh` starts at stage N (`stage=N stop_stage=N`: N only);
# a run is resumed to its stage's length (interrupted: from its last.pt; a raised BASE_STEPS continues the
# baseline, its cosine schedule re-planned over the new length); a finished score is kept.
# Across sessions (a fresh checkout has no $OUT): every run's state is kept in $KEEP/NAME, to commit: the
# baseline's (and baseline_long's) config, metrics, curve, last.pt and best.pt when stage 2 ends; a
# fine-tune's config, metrics and curve with its test score once scored, or its last.pt while unfinished,
# and base.txt, the base it started from (`stage=keep bash
# recipes/bench/bench_se.sh` before a session stops). Stages 2-5 restore from $KEEP what $OUT lacks. A
# resumed --qa learn run starts an empty replay buffer (it refills within replay-size / batch steps). The
# ladder is not kept (its snapshots serve stage 4 once; the warm critic they made is kept with its run).
set -euo pipefail
# beside the repository; absolute, as the lists name files by absolute path
CORPUS=$(realpath -m "${CORPUS:-$(dirname "$0")/../../../shared/corpus}")
OUT=${OUT:-bench_out/se}
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
ITEMS=${ITEMS:-100}
BASE_STEPS=${BASE_STEPS:-12000}
LONG_CROP=${LONG_CROP:-2}
LONG_STEPS=${LONG_STEPS:-2400}
FT_CROP=${FT_CROP:-1}  # fine-tunes' crops: 1 s keeps a 1,500-step pesq-wb arm within a session of one core
FT_STEPS=${FT_STEPS:-1500}
FT_EPOCH_STEPS=${FT_EPOCH_STEPS:-250}
SEEDS=${SEEDS:-"1 2 3"}
STEPS_PER_EPOCH=${STEPS_PER_EPOCH:-200}
QA_MODEL=${QA_MODEL:-pesq-wb-nisqa}
VALID_ITEMS=${VALID_ITEMS:-24}
TEST_NOISES=${TEST_NOISES:-"running_tap sb_noise2 sb_noise3 blanket_city blanket_rain alarmclock_waves
ambient_water_urban"}
# One guidance per line: a tag, then its train-se flags. Issue 11's 120-step table measured these against
# the control (all lost PESQ): frozen_pesqwb --qa frozen --qa-model pesq-wb | grl_pesqwb --qa grl ... |
# joint_pesqwb --qa joint ... | frozen_dnsmos --qa frozen --qa-model dnsmos --dnsmos-target ovrl.
# The learning critic: a 250-step pilot from the baseline's epoch 4 (one seed, 24 validation mixtures; the
# session notes of 2026-12-04 have the tables) chose the non-intrusive pesq-wb-nisqa learning whole at
# weight 0.1 (learn_nisqa --qa learn --qa-model pesq-wb-nisqa --pesq-workers 1 --qa-weight 0.1); from the
# finished baseline it ran 0.08 PESQ behind the control at both of its first two epochs (seed 1), while
# the intrusive critic (MetricGAN's form, critic lr 1e-3) ran 0.04 behind: the bench's learning arm.
GUIDES=${GUIDES:-"learn_intrusive --qa learn --qa-model intrusive --pesq-workers 1 --qa-weight 0.1 --qa-lr 0.001"}
# Issue 31's pilot: one mode per line, a tag, then its train-se flags (each weight adds --qa-weight W).
KEEP=${KEEP:-recipes/bench/bench_se}
PESQ_WB=$KEEP/pesq_wb  # the pinned pesq-wb (above)
PILOT_MODES=${PILOT_MODES:-"frozen_pesqwb --qa frozen --qa-model $PESQ_WB
learn_pesqwb --qa learn --qa-model $PESQ_WB --pesq-workers 1"}
PILOT_WEIGHTS=${PILOT_WEIGHTS:-"0.03 0.1 0.3"}
PILOT_STEPS=${PILOT_STEPS:-250}
PILOT_SEED=${PILOT_SEED:-1}
LEARN_TAG=${LEARN_TAG:-learn_pesqwb}  # the pilot's mode whose arm stage 4 warms up
WARM_TAG=${WARM_TAG:-learn_pesqwb_warm}
LADDER_STEPS=${LADDER_STEPS:-1200}
WARMUP_STEPS=${WARMUP_STEPS:-1000}
WARMUP_LCC=${WARMUP_LCC:-0.8}
stage=${stage:-0}
stop_stage=${stop_stage:-7}
[ -d "$CORPUS/speech" ] || { echo "bench_se: no corpus at $CORPUS (set CORPUS)" >&2; exit 2; }
mkdir -p "$OUT/lists" "$OUT/logs/pilot" "$OUT/runs/pilot" "$OUT/scores/pilot" "$KEEP/pilot"
# The base, the run every fine-tune starts from, and what made it (a kept fine-tune's base.txt)
if [ "$LONG_STEPS" -gt 0 ]; then
    BASE=baseline_long
    BASE_ID="baseline_long: $LONG_STEPS steps of $LONG_CROP s crops from baseline: $BASE_STEPS steps of 1 s"
    BASE_ID+=" crops"
else
    BASE=baseline
    BASE_ID="baseline: $BASE_STEPS steps of 1 s crops"
fi
ARMS=$KEEP/pilot/arms.txt  # the pilot's choice: one arm a line, its tag, then its train-se flags
WARM_RUN=${WARM_TAG}_s${SEEDS%% *}  # the warm arm's first seed, whose warm-up makes the warm critic
OUT=$(cd "$OUT" && pwd)  # lists name files by absolute path
# Every run: same batch and validation; only the crops, the steps, the start and the guidance differ.
# The baseline, baseline_long and the ladder: epochs of STEPS_PER_EPOCH steps of 4 crops each.
EPOCH_PLAN=(--steps-per-epoch "$STEPS_PER_EPOCH" --epoch-items $(( STEPS_PER_EPOCH * 4 )))
COMMON=(--device "$DEVICE" --threads "$THREADS" --snr-min 0 --snr-max 15 --batch-size 4
        --clean "$OUT/lists/train_clean.txt" --noise "$OUT/lists/train_noise.txt"
        --valid-clean "$OUT/lists/valid_clean.txt" --valid-noise "$OUT/lists/train_noise.txt"
        --valid-items "$VALID_ITEMS"
        --valid-crop-seconds 4 --patience 0)

# A run's NAME is its tag and seed (control_s1), a pilot run's pilot/TAG_sSEED: runs, logs, scores and kept
# state sit under the same relative name.
run_of() {  # the run folder of NAME, or nothing
    find "$OUT/runs/$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' 2> /dev/null | head -n 1 || true
}

is_baseline() { [ "$1" = baseline ] || [ "$1" = baseline_long ]; }  # kept with its checkpoints, no base

keep() {  # keep NAME: run NAME's state into $KEEP/NAME, to commit between sessions (see the header)
    local dir=$(run_of "$1") file
    [ -n "$dir" ] || return 0
    rm -rf "$KEEP/$1.tmp" && mkdir -p "$KEEP/$1.tmp"
    for file in config.yaml metrics.csv curves.png critic_warm.pt critic_warm.yaml; do
        [ -f "$dir/$file" ] && cp "$dir/$file" "$KEEP/$1.tmp/"
    done
    if is_baseline "$1"; then
        cp "$dir/last.pt" "$dir/best.pt" "$KEEP/$1.tmp/"
    else
        echo "$BASE_ID" > "$KEEP/$1.tmp/base.txt"
        if [ -f "$OUT/scores/$1.csv" ]; then
            cp "$OUT/scores/$1.csv" "$KEEP/$1.tmp/score.csv"
        elif [ -f "$dir/last.pt" ]; then
            cp "$dir/last.pt" "$KEEP/$1.tmp/"
        fi
    fi
    rm -rf "$KEEP/$1" && mv "$KEEP/$1.tmp" "$KEEP/$1"
}

same_base() {  # same_base NAME: a kept fine-tune NAME started from today's base, or stop
    local theirs
    is_baseline "$1" || [ ! -f "$KEEP/$1/config.yaml" ] && return 0
    theirs=$(cat "$KEEP/$1/base.txt" 2> /dev/null || echo "unrecorded")
    [ "$theirs" = "$BASE_ID" ] && return 0
    echo "bench_se: $KEEP/$1 was fine-tuned from another base ($theirs), today's is $BASE_ID: move it aside" \
        "(git mv $KEEP/$1 $KEEP/superseded/) to train it again" >&2
    exit 1
}

restore() {  # restore NAME: $KEEP/NAME back into $OUT when $OUT has no run NAME (a fresh checkout)
    local kept="$OUT/runs/$1/${1##*/}_kept"
    same_base "$1"
    [ -z "$(run_of "$1")" ] && [ -f "$KEEP/$1/config.yaml" ] || return 0
    mkdir -p "$kept"
    find "$KEEP/$1" -maxdepth 1 -type f ! -name score.csv -exec cp {} "$kept/" \;
    if [ -f "$KEEP/$1/score.csv" ]; then
        cp "$KEEP/$1/score.csv" "$OUT/scores/$1.csv"
        echo "$kept" > "$OUT/runs/$1.done"
    fi
    echo "   $1 restored from $KEEP/$1 (epoch $(tail -n 1 "$kept/metrics.csv" | cut -d, -f1))"
}

fine_tune_names() { while read -r seed tag _; do echo "${tag}_s$seed"; done < <(fine_tunes); }

pilot_names() { while read -r tag _; do echo "pilot/${tag}_s$PILOT_SEED"; done < <(pilot_runs); }

at_most_jobs() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done; }

train() {  # train TAG EPOCHS FLAGS...: one run in $OUT/runs/TAG/ trained to EPOCHS; a run that exists
    local tag=$1 epochs=$2 dir  # (finished, interrupted, or shorter than EPOCHS) is resumed to EPOCHS
    shift 2
    dir=$(run_of "$tag")
    if [ -n "$dir" ] && [ -f "$dir/last.pt" ]; then
        # a run that trains on has outgrown its test score: scored again by stage 6
        [ "$(( $(wc -l < "$dir/metrics.csv") - 1 ))" -ge "$epochs" ] || rm -f "$OUT/scores/$tag.csv"
        mosqa train-se --resume "$dir" --epochs "$epochs" --threads "$THREADS" --device "$DEVICE" \
            >> "$OUT/logs/$tag.out" 2>> "$OUT/logs/$tag.log"
    else
        mosqa train-se "${COMMON[@]}" --exp-dir "$OUT/runs/$tag" --name "${tag##*/}" --epochs "$epochs" "$@" \
            > "$OUT/logs/$tag.out" 2> "$OUT/logs/$tag.log"
    fi
    tail -n 1 "$OUT/logs/$tag.out" > "$OUT/runs/$tag.done"
}

run_dir() { cat "$OUT/runs/$1.done"; }

epochs() { echo $(( ($1 + $2 - 1) / $2 )); }  # epochs STEPS PER_EPOCH: epochs that cover STEPS

score() {  # score NAME LABEL [RUN [SEED [FLAGS...]]]: one CSV per run, kept once written; a kept CSV
    # without the listener column gets that column alone, where the run's weights are at hand
    local name=$1 label=$2 run=${3:-} seed=${4:-} csv=$OUT/scores/$1.csv
    shift $(( $# < 4 ? $# : 4 ))
    if [ -f "$csv" ]; then
        head -n 1 "$csv" | grep -q ',listener' && return 0
        if [ -n "$run" ] && ! ls "$run"/*.pt > /dev/null 2>&1; then
            echo "   $name: kept without its weights, its listener cells stay –"
            return 0
        fi
    fi
    python recipes/bench/se_bench_table.py score "$OUT/test/pairs.list" "$csv" \
        --label "$label" --qa-model "$QA_MODEL" --device "$DEVICE" --threads "$THREADS" \
        ${run:+--run "$run"} ${seed:+--seed "$seed"} "$@" 2> "$OUT/logs/$name.score.log"
}

ft_train() {  # ft_train NAME SEED STEPS FLAGS...: NAME fine-tuned from the base to STEPS steps (train)
    local name=$1 seed=$2 steps=$3
    shift 3
    train "$name" "$(epochs "$steps" "$FT_EPOCH_STEPS")" --init "$(run_dir "$BASE")" \
        --crop-seconds "$FT_CROP" --steps-per-epoch "$FT_EPOCH_STEPS" \
        --epoch-items $(( FT_EPOCH_STEPS * 4 )) --lr 0.0005 --seed "$seed" "$@"
}

fine_tune() {  # fine_tune NAME LABEL SEED STEPS FLAGS...: ft_train, then score and keep it, in the
    local name=$1 label=$2 seed=$3 steps=$4  # background; a run scored here or kept scored is skipped
    shift 4
    restore "$name"
    [ -f "$OUT/scores/$name.csv" ] && return 0
    at_most_jobs
    echo "   $name (log: $OUT/logs/$name.log)"
    { ft_train "$name" "$seed" "$steps" "$@"
      score "$name" "$label" "$(run_dir "$name")" "$seed"
      keep "$name"; } &
}

arm_flags() { awk -v tag="$1" '$1 == tag {$1 = ""; sub(/^ /, ""); print}' "$ARMS"; }

warm_critic() {  # the warm critic every seed of the warm arm starts from: stage 4's, out of $KEEP
    [ -f "$OUT/critic_warm.pt" ] || cp "$KEEP/$WARM_RUN/critic_warm.pt" "$OUT/" 2> /dev/null || true
    echo "$OUT/critic_warm.pt"
}

pilot_runs() {  # every (tag, flags) of the pilot, one per line: its control, then each mode at each weight
    echo control
    while read -r mode flags; do
        for weight in $PILOT_WEIGHTS; do echo "${mode}_w$weight $flags --qa-weight $weight"; done
    done <<< "$PILOT_MODES"
}

fine_tunes() {  # every (seed, tag, flags) of the fine-tune stage, one per line
    local arms
    arms=$(printf "control\n%s\n" "$GUIDES"
           if [ -f "$ARMS" ]; then cat "$ARMS"; fi
           if [ -f "$(warm_critic)" ]; then
               echo "$WARM_TAG $(arm_flags "$LEARN_TAG") --critic-init $(warm_critic)"
           fi)
    for seed in $SEEDS; do
        while read -r tag flags; do
            [ -n "$tag" ] && echo "$seed $tag $flags"
        done <<< "$arms"
    done
}

all_left() {  # all_left PATH_FORMAT MESSAGE_FORMAT NAME...: every run NAME (%s) left PATH, or stop
    local format=$1 message=$2 name
    shift 2
    for name in "$@"; do
        # shellcheck disable=SC2059  # the formats are this script's own
        [ -f "$(printf "$format" "$name")" ] || { printf "bench_se: $message\n" "$name" "$name" >&2; exit 1; }
    done
}

pin_pesq_wb() {  # the pesq-wb of every run of the bench: a copy of the shipped one, made once (header)
    local shipped file
    shipped="$(dirname "$0")/../../mosqa/pretrained/pesq-wb"
    if [ ! -f "$PESQ_WB/config.yaml" ]; then
        rm -rf "$PESQ_WB.tmp" && mkdir -p "$PESQ_WB.tmp"
        for file in config.yaml best.pt MODEL_CARD.md; do cp "$shipped/$file" "$PESQ_WB.tmp/"; done
        mv "$PESQ_WB.tmp" "$PESQ_WB"
    fi
    echo "   pesq-wb: campaign row $(awk '$1 == "row:" {print $2}' "$PESQ_WB/config.yaml") ($PESQ_WB)"
}

if [ "$stage" = keep ]; then  # before a session stops: every run's state into $KEEP, to commit
    for name in baseline baseline_long $(pilot_names) $(fine_tune_names); do keep "$name"; done
    echo "kept in $KEEP: $(ls "$KEEP" | tr '\n' ' ')"
    exit 0
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    echo "== 0. voices and noises: train / validation / test"
    ls "$CORPUS/speech" | grep -v '^speech_commands$' | sort |
        awk '$1 ~ /^ast_e[ns]_allison$/ {print $1, "train"; next}
             {n++; s = (n % 8 == 4) ? "test" : (n % 8 == 7) ? "valid" : "train"; print $1, s}' \
        > "$OUT/lists/voices.txt"
    # quiet-floor recordings (floor_rel_db, column 18 of qc.csv) for validation and test references
    awk -F, 'NR > 1 && $2 == "speech" && ($18 == "" || $18 <= -35) {print $1}' "$CORPUS/qc.csv" |
        sort > "$OUT/lists/quiet.txt"
    for split in train valid test; do
        awk -v s=$split '$2 == s {print $1}' "$OUT/lists/voices.txt" | while read -r v; do
            ls "$CORPUS/speech/$v/"*.flac
        done > "$OUT/lists/${split}_all.txt"
    done
    cp "$OUT/lists/train_all.txt" "$OUT/lists/train_clean.txt"
    for split in valid test; do  # quiet floors only; a fixed shuffle mixes the voices in the first items
        sed "s|^$CORPUS/||" "$OUT/lists/${split}_all.txt" | sort | comm -12 - "$OUT/lists/quiet.txt" |
            sed "s|^|$CORPUS/|" | shuf --random-source=<(yes) > "$OUT/lists/${split}_clean.txt"
    done
    ls "$CORPUS/noise/"*.flac > "$OUT/lists/all_noise.txt"
    printf "$CORPUS/noise/%s.flac\n" $TEST_NOISES > "$OUT/lists/test_noise.txt"
    mkdir -p "$OUT/gen_noise"
    python - "$OUT/gen_noise" <<'PY'
import sys
from mosqa.audio import write_audio
from mosqa.defaults import generated_noises
for name, wav in generated_noises(seconds=60.0).items():
    write_audio(f"{sys.argv[1]}/{name}.wav", wav, 16000)
PY
    { grep -v -x -F -f "$OUT/lists/test_noise.txt" "$OUT/lists/all_noise.txt"; ls "$OUT/gen_noise/"*.wav; } \
        > "$OUT/lists/train_noise.txt"
    for f in voices train_clean valid_clean test_clean train_noise test_noise; do
        printf "%-12s %5d\n" "$f" "$(wc -l < "$OUT/lists/$f.txt")"
    done
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    echo "== 1. held-out test set: $ITEMS mixtures of unseen voices and unseen noises, 0-15 dB"
    python recipes/tools/make_mixtures.py "$OUT/lists/test_clean.txt" "$OUT/lists/test_noise.txt" "$OUT/test" \
        --items "$ITEMS" --snr-min 0 --snr-max 15 --max-seconds 6 --seed 1234
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    echo "== 2. baseline: dpcrn, spectral loss, $BASE_STEPS steps (log: $OUT/logs/baseline.log)"
    restore baseline
    train baseline "$(epochs "$BASE_STEPS" "$STEPS_PER_EPOCH")" -c recipes/conf/se_dpcrn.yaml \
        --crop-seconds 1 "${EPOCH_PLAN[@]}" --lr 0.002 --scheduler cosine
    keep baseline
    if [ "$LONG_STEPS" -gt 0 ]; then
        echo "   baseline_long: $LONG_STEPS steps of $LONG_CROP s crops (log: $OUT/logs/baseline_long.log)"
        restore baseline_long
        train baseline_long "$(epochs "$LONG_STEPS" "$STEPS_PER_EPOCH")" --init "$(run_dir baseline)" \
            --crop-seconds "$LONG_CROP" "${EPOCH_PLAN[@]}" --lr 0.0005 --scheduler cosine
        keep baseline_long
    fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    echo "== 3. pilot: $PILOT_STEPS steps from $BASE at weights $PILOT_WEIGHTS, seed $PILOT_SEED"
    pin_pesq_wb
    while read -r tag flags; do
        read -r -a extra <<< "$flags"
        fine_tune "pilot/${tag}_s$PILOT_SEED" "$tag" "$PILOT_SEED" "$PILOT_STEPS" "${extra[@]}"
    done < <(pilot_runs)
    wait
    all_left "$OUT/scores/%s.csv" "pilot run %s failed; see $OUT/logs/%s.log" $(pilot_names)
    python recipes/bench/se_bench_table.py table "$OUT/scores/pilot" --out "$KEEP/pilot/table" \
        --pesq-wb "$PESQ_WB"
    python recipes/bench/se_bench_table.py watch "$OUT/runs/pilot" --out "$KEEP/pilot/critic_watch" || true
    while read -r mode flags; do
        best=$(python recipes/bench/se_bench_table.py pick "$OUT/runs/pilot" "${mode}_w")
        weight=${best#"${mode}_w"}
        echo "$mode $flags --qa-weight ${weight%_s*}"
    done <<< "$PILOT_MODES" > "$ARMS.tmp"
    mv "$ARMS.tmp" "$ARMS"
    echo "   the arms of stage 5 (best weight on validation PESQ, $ARMS):"
    sed 's/^/     /' "$ARMS"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    echo "== 4. the warm critic: $WARM_RUN warms up on a ladder of enhancers (log: $OUT/logs/$WARM_RUN.log)"
    pin_pesq_wb
    [ -f "$ARMS" ] || { echo "bench_se: no $ARMS; run stage 3 (the pilot) first" >&2; exit 1; }
    restore "$WARM_RUN"
    if [ ! -f "$KEEP/$WARM_RUN/critic_warm.pt" ]; then
        echo "   ladder: $LADDER_STEPS steps from scratch, a snapshot each epoch (log: $OUT/logs/ladder.log)"
        train ladder "$(epochs "$LADDER_STEPS" "$STEPS_PER_EPOCH")" -c recipes/conf/se_dpcrn.yaml \
            --crop-seconds 1 "${EPOCH_PLAN[@]}" --lr 0.002 --scheduler cosine --keep-every 1
        ladder="$(ls "$(run_dir ladder)"/epoch_*.pt | paste -sd ,),$(run_dir "$BASE")/best.pt"
        read -r -a extra <<< "$(arm_flags "$LEARN_TAG")"
        ft_train "$WARM_RUN" "${SEEDS%% *}" "$FT_EPOCH_STEPS" "${extra[@]}" --critic-warmup "$WARMUP_STEPS" \
            --critic-warmup-lcc "$WARMUP_LCC" --critic-warmup-from "$ladder"
        keep "$WARM_RUN"
    fi
    grep -h "critic warm-up:" "$OUT/runs/$WARM_RUN"/*/train.log 2> /dev/null | sed 's/^/   /' || true
    rm -f "$OUT/critic_warm.pt"  # stage 5 takes the kept one
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    echo "== 5. fine-tune $FT_STEPS steps from $BASE: control and each arm, seeds $SEEDS"
    pin_pesq_wb
    [ -f "$ARMS" ] || echo "   (no pilot arms: $ARMS is made by stage 3)"
    [ -f "$(warm_critic)" ] || echo "   (no warm arm: its critic is made by stage 4)"
    while read -r seed tag flags; do
        read -r -a extra <<< "$flags"
        fine_tune "${tag}_s$seed" "$tag" "$seed" "$FT_STEPS" "${extra[@]}"
    done < <(fine_tunes)
    wait
    all_left "$OUT/runs/%s.done" "training %s failed; see $OUT/logs/%s.log" $(fine_tune_names)
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
    echo "== 6. score noisy input, baseline and every fine-tuned run on $OUT/test/pairs.list"
    score noisy noisy &
    at_most_jobs
    if python -c "import noisereduce" 2> /dev/null; then
        score spectral_gating spectral_gating "" "" --classic spectral_gating &
        at_most_jobs
    else
        echo "   (no noisereduce: the spectral-gating row is left out; pip install noisereduce)"
    fi
    score baseline baseline "$(run_dir baseline)" &
    if [ "$LONG_STEPS" -gt 0 ]; then
        at_most_jobs
        score baseline_long baseline_long "$(run_dir baseline_long)" &
    fi
    while read -r seed tag _; do
        at_most_jobs
        score "${tag}_s$seed" "$tag" "$(run_dir "${tag}_s$seed")" "$seed" &
    done < <(fine_tunes)
    wait
    all_left "$OUT/scores/%s.csv" "scoring %s failed; see $OUT/logs/%s.score.log" $(fine_tune_names)
    for name in $(fine_tune_names); do keep "$name"; done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
    echo "== 7. one table: mean ± sd over seeds, paired differences to the control ($KEEP/table.md)"
    pin_pesq_wb
    python recipes/bench/se_bench_table.py table "$OUT/scores" --out "$KEEP/table" --pesq-wb "$PESQ_WB"
    python recipes/bench/se_bench_table.py watch "$OUT/runs" --out "$KEEP/critic_watch"
fi
