#!/usr/bin/env bash
# The quality-model campaign (issue 19): each session adds fresh simulated shards to one model until its
# budget ends, then scores the fixed validation and test sets and appends a row to recipes/campaign/.
#
#   bash recipes/campaign_qa.sh                        # one session: BUDGET_MIN of shards, then the row
#   BUDGET_MIN=90 JOBS=2 bash recipes/campaign_qa.sh
#   SHARD=7 bash recipes/campaign_qa.sh                # start at another shard than the state's
#   nohup bash recipes/campaign_qa.sh > exp/campaign.log 2>&1 &    # how a session starts it
#
# Stages: 0 references + the split of voices, noise files, music and rooms (once; idempotent) |
# 1 fresh shards into the ridge sums until BUDGET_MIN ends | 2 the row (recipes/campaign/campaign_qa.py). Commit recipes/campaign/ and mosqa/pretrained/pesq-wb after it
# (and at least hourly while it runs: the state is saved after every block of clips).
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${CORPUS:-../shared/corpus}
WORK=${WORK:-exp/campaign}
BUDGET_MIN=${BUDGET_MIN:-60}
JOBS=${JOBS:-2}
SHARD=${SHARD:-}
VOICE_PERTURB=${VOICE_PERTURB:-0}  # shards 6+ (third session): 0.15, to widen the training voices
CALL_SHARE=${CALL_SHARE:-0}  # share of a new shard's clips with a call impairment (issue 29): set it from a
                             # fresh shard on (a shard begun without them resumes only without them)
RECORDING_CHAIN=${RECORDING_CHAIN:-0}  # share of a new shard's clips whose reference passes a drawn recording
                                       # chain (issue 30): new shards from the restart on should set it (e.g.
                                       # 0.5); a shard begun without it resumes only without it
FAULT_SHARE=${FAULT_SHARE:-0}  # share of a new shard's degraded clips with a signal-path fault (aliasing, an
                               # outage; issue 30): from a fresh shard on (e.g. 0.08), like the two above
SHARD_OPTIONS=${SHARD_OPTIONS:-}  # more simulate options for new shards, e.g. "--band-order-range 1,8" (row 6 on:
                                 # band limits of gentle and steep slopes); a shard resumes only with its own
stage=${stage:-0}
stop_stage=${stop_stage:-2}
in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if in_stage 0; then
  echo "stage 0: references (own noise floor <= -35 dB) and the campaign split"
  [ -f "$WORK/references/floors.csv" ] || python recipes/tools/select_references.py "$CORPUS" "$WORK/references"
  python recipes/campaign/campaign_split.py "$WORK/references/speech" "$CORPUS" "$WORK/split" \
    --test-groups "$(cat recipes/conf/pesq_wb_test_voices.txt)" \
    --valid-groups "$(cat recipes/conf/pesq_wb_valid_voices.txt)"  # the voices pretrain_qa.sh holds out
fi

if in_stage 1; then
  echo "stage 1: a campaign session of $BUDGET_MIN min"
  python recipes/campaign/campaign_qa.py train --budget-min "$BUDGET_MIN" --jobs "$JOBS" --work "$WORK" \
    --voice-perturb "$VOICE_PERTURB" --call-share "$CALL_SHARE" --recording-chain "$RECORDING_CHAIN" \
    --fault-share "$FAULT_SHARE" --shard-options "$SHARD_OPTIONS" \
    ${SHARD:+--shard "$SHARD"}
fi

if in_stage 2; then
  echo "stage 2: the fixed validation and test sets (v1, and v2 with call impairments), the row in" \
    "campaign.csv, campaign.png, promotion"
  python recipes/campaign/campaign_qa.py row --jobs "$JOBS" --work "$WORK"
fi
