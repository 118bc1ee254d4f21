#!/usr/bin/env bash
# DNSMOS throughput on the same 10 s clips: Microsoft's reference (speechmos + librosa, in its own venv),
# then mosqa's onnx and torch engines (each checked against the reference to 1e-4), then the cost of the
# differentiable DNSMOS as a training loss (forward + backward, 4 x 1 s crops, one thread).
#   DNSMOS_BENCH_N=100     number of 10 s clips (built from $CORPUS/speech)
#   CORPUS=../shared/corpus (beside the repository)
#   REFENV=/tmp/mosqa_dnsmos_refenv   throwaway venv for the reference, made here when missing
#                                     (librosa is not a mosqa dependency)
#   PROFILE=1   also write onnxruntime's per-node profiles, under $OUT/profile (never the working directory)
# Run it when the machine is quiet: the load average is printed before and after each part.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${DNSMOS_BENCH_N:-100}
CORPUS=$(realpath -m "${CORPUS:-../shared/corpus}")  # beside the repository; absolute, as links point into it
OUT=${BENCH_OUT:-bench_out}/dnsmos
REFENV=${REFENV:-/tmp/mosqa_dnsmos_refenv}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${PROFILE:-0}" = 1 ]; then export MOSQA_ORT_PROFILE="$OUT/profile"; fi

REFPY=python
if ! python -c "import librosa, speechmos.dnsmos" 2>/dev/null; then
    if [ ! -x "$REFENV/bin/python" ] || ! "$REFENV/bin/python" -c "import librosa, speechmos.dnsmos" 2>/dev/null; then
        echo "making a throwaway venv with the reference (speechmos, librosa) in $REFENV"
        python3 -m venv "$REFENV"
        "$REFENV/bin/pip" install -q speechmos librosa onnxruntime soundfile scipy
    fi
    REFPY="$REFENV/bin/python"
fi

if [ ! -f "$OUT/clips_$N/list.txt" ]; then
    [ -d "$CORPUS/speech" ] || { echo "no speech corpus at $CORPUS/speech (set CORPUS=...)" >&2; exit 2; }
    echo "building $N clips of 10 s from $CORPUS"
    python recipes/bench/dnsmos_reference.py clips "$CORPUS" "$OUT/clips_$N" "$N"
fi
{
    echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$REFPY" recipes/bench/dnsmos_reference.py reference "$OUT/clips_$N/list.txt" "$OUT/reference_$N.json"
    python recipes/bench/dnsmos_reference.py bench "$OUT/clips_$N/list.txt" "$OUT/reference_$N.json"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python recipes/bench/dnsmos_reference.py grad-cost "$OUT/clips_$N/list.txt"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/bench_$N.txt"
