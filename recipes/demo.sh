#!/usr/bin/env bash
# End-to-end demo on the built-in data (nothing to download): simulate a PESQ-labelled corpus from
# the espeak-ng speech shipped in mosqa/data, then validate, split by speaker and balance it.
# Run from the repository root with `mosqa` on PATH (`make demo` does both); writes under ./demo/.
set -euo pipefail
DEMO=${DEMO_DIR:-demo}
SEED=${SEED:-0}

echo "== 1. simulate: 36 built-in utterances x 6 degraded versions, labelled by wideband PESQ"
mosqa simulate --builtin --out-dir "$DEMO/sim" --per-utt 6 --seed "$SEED"

echo "== 2. prepare-list: check every file, split by speaker (spk6 = unseen test speaker), balance train"
mosqa prepare-list "$DEMO/sim/all.list" --out-dir "$DEMO/lists" --seed "$SEED" --test-groups spk6 \
    --bin-width 0.25
