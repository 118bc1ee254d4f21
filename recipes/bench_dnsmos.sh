#!/usr/bin/env bash
# DNSMOS throughput: Microsoft's reference (speechmos + librosa) against mosqa on the same 10 s clips,
# in one Python process, checking that every score agrees to 1e-4.
#   DNSMOS_BENCH_N=100     number of 10 s clips (built from $CORPUS/speech)
#   CORPUS=../shared/corpus (beside the repository)
#   REFENV=/tmp/mosqa_dnsmos_refenv   throwaway venv for librosa + speechmos, made here if librosa is
#                                     not importable by `python` (librosa is not a mosqa dependency)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${DNSMOS_BENCH_N:-100}
CORPUS=$(realpath -m "${CORPUS:-../shared/corpus}")  # beside the repository; absolute, as links point into it
OUT=${BENCH_OUT:-bench_out}/dnsmos
REFENV=${REFENV:-/tmp/mosqa_dnsmos_refenv}

PY=python
if ! python -c "import librosa, speechmos.dnsmos" 2>/dev/null; then
    if [ ! -x "$REFENV/bin/python" ] || ! "$REFENV/bin/python" -c "import librosa, speechmos.dnsmos" 2>/dev/null; then
        echo "making a throwaway venv with the reference (speechmos, librosa) in $REFENV"
        python3 -m venv "$REFENV"
        "$REFENV/bin/pip" install -q speechmos librosa onnxruntime soundfile scipy
    fi
    PY="$REFENV/bin/python"
fi

if [ ! -f "$OUT/clips_$N/list.txt" ]; then
    echo "building $N clips of 10 s from $CORPUS"
    python recipes/dnsmos_reference.py clips "$CORPUS" "$OUT/clips_$N" "$N"
fi
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" recipes/dnsmos_reference.py bench "$OUT/clips_$N/list.txt" \
    | tee "$OUT/bench_$N.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
