"""`mosqa predict` speed: its two engines (torch, onnx; float32 both) on one CPU thread each, and
files/s against `mosqa dnsmos`.

    python recipes/bench/bench_predict.py LIST [--model pesq-wb]

All scorers run in this process, one thread each, on the same files (read from disk each time, as
the commands do), after one warm-up file. Wall time is reported, and CPU time, which contention on a
shared machine changes less, with the load average before and after. The onnx engine's scores (every
column: score, listener_mos) are checked against torch's.
"""

import argparse
import os
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)"""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - c0


def line(name: str, n: int, audio: float, wall: float, cpu: float) -> str:
    return (f"{name:30s} {wall:7.2f} s wall {n / wall:7.2f} files/s ({n / cpu:6.2f} per CPU s)  "
            f"real-time factor {audio / wall:6.1f}x wall, {audio / cpu:6.1f}x CPU")


def main(argv=None) -> int:
    from mosqa import dnsmos, predict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("list", type=Path)
    ap.add_argument("--model", default="pesq-wb")
    args = ap.parse_args(argv)
    paths = [Path(line.strip()) for line in args.list.read_text().splitlines() if line.strip()]
    n = len(paths)
    load_before = os.getloadavg()[0]
    runs = {}
    for engine in ("torch", "onnx"):
        options = predict.Options(model=args.model, device="cpu", engine=engine)
        predictor = predict.Predictor(options, threads=1)
        predictor.score_group(paths[:1])
        runs[engine] = timed(lambda p=predictor: p.score_group(paths))
    audio = sum(r["len_in_sec"] for r in runs["torch"][0])
    scorer = dnsmos.Scorer(threads=1)
    scorer.score_file(str(paths[0]))
    _, d_wall, d_cpu = timed(lambda: [scorer.score_file(str(p)) for p in paths])
    print(f"files: {n}, {audio:.0f} s of audio; one thread each; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")
    for engine, (_, wall, cpu) in runs.items():
        print(line(f"predict --engine {engine}", n, audio, wall, cpu))
    print(line("dnsmos (P.835 + P.808)", n, audio, d_wall, d_cpu))
    (t_rows, t_wall, t_cpu), (o_rows, o_wall, o_cpu) = runs["torch"], runs["onnx"]
    columns = predictor.columns  # the onnx engine's; torch's are the same
    worst = max(abs(a[c] - b[c]) for a, b in zip(t_rows, o_rows, strict=True) for c in columns)
    print(f"onnx / torch files/s:      {t_wall / o_wall:.2f}x wall, {t_cpu / o_cpu:.2f}x CPU; "
          f"largest difference in {', '.join(columns)}: {worst:.1e}")
    print(f"predict (onnx) / dnsmos files/s: {d_wall / o_wall:.2f}x wall, {d_cpu / o_cpu:.2f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
