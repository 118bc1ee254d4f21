#!/usr/bin/env bash
# Does the wider impairment coverage (issue 14) make a quality model rank and place every kind better?
# The same references, speaker split and seeds, simulated twice by recipes/pretrain_qa.sh: with the ranges
# `simulate` had before issue 14 (narrow: recorded rooms only, clipping to 30 % of peak, band limits down
# to 1 kHz, no tandem codecs, ...) and with today's defaults (wide). One architecture is trained on each
# over SEEDS; both, and the shipped model, are scored on the held-out test voices of the wide corpus
# (harsher and more varied, as users' audio is) and of the narrow one, per impairment kind: LCC and bias.
#
#   bash recipes/bench/coverage_qa.sh                          # everything; stage=N resumes from stage N
#   PER_UTT=2 EPOCHS=12 CONF=crn_cp_qn_C256_L128_T256 SEEDS="0 1 2" bash recipes/bench/coverage_qa.sh
#
# Stages: 0 simulate, split and balance both corpora | 1 train CONF x SEEDS on each | 2 evaluate every
# run and the shipped model on both test sets | 3 the tables ($OUT/coverage_{wide,narrow}_test.md)
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-exp/coverage_qa}
CONF=${CONF:-crn_cp_qn_C256_L128_T256}
SEEDS=${SEEDS:-"0 1 2"}
SHIPPED=${SHIPPED:-mosqa/pretrained/pesq-wb}
export PER_UTT=${PER_UTT:-2} EPOCHS=${EPOCHS:-12}
# Every range as `simulate` drew it before issue 14 (shared with recipes/bench/bench_simulate.sh).
NARROW=$(cat recipes/conf/simulate_narrow_ranges.args)
stage=${stage:-0}

corpus() {  # corpus NAME STAGE_FROM STAGE_TO: recipes/pretrain_qa.sh on $OUT/NAME
    local sim_args=""
    [ "$1" = narrow ] && sim_args=$NARROW
    OUT=$OUT/$1 SIM_ARGS=$sim_args CONFS=$CONF SEEDS=$SEEDS stage=$2 stop_stage=$3 bash recipes/pretrain_qa.sh
}

if [ "$stage" -le 0 ]; then
    for name in wide narrow; do corpus "$name" 0 2; done
fi

if [ "$stage" -le 1 ]; then
    for name in wide narrow; do corpus "$name" 3 3; done
fi

if [ "$stage" -le 2 ]; then
    for test in wide narrow; do
        list=$OUT/$test/lists/wav_test_qn.list
        for run in "$OUT"/wide/exp/*/ "$OUT"/narrow/exp/*/ "$SHIPPED"; do
            trained=$(basename "$(dirname "$(dirname "$run")")")  # wide, narrow, or mosqa (shipped)
            [ "$run" = "$SHIPPED" ] && trained=shipped
            out=$OUT/eval_$test/$trained/$(basename "$run")
            [ -f "$out/predictions.csv" ] || mosqa eval-qa "$run" --list "$list" --out-dir "$out" \
                --cache-dir "$OUT/$test/cache" > /dev/null
        done
    done
fi

if [ "$stage" -le 3 ]; then
    for test in wide narrow; do
        echo "== held-out voices of the $test corpus: trained on narrow (before) / wide (after) ranges"
        python recipes/bench/coverage_table.py --meta "$OUT/$test/sim/meta.csv" --out "$OUT/coverage_${test}_test.md" \
            "before=$OUT/eval_$test/narrow/*" "after=$OUT/eval_$test/wide/*" \
            "shipped=$OUT/eval_$test/shipped/*"
    done
fi
