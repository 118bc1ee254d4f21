"""`mosqa predict` speed: real-time factor on one CPU thread, and files/s against `mosqa dnsmos`.

    python recipes/bench_predict.py LIST [--model pesq-wb]

Both scorers run in this process, one thread each, on the same files (read from disk each time, as
the commands do), after one warm-up file. Wall time is reported, and CPU time, which contention on a
shared machine changes less.
"""

import argparse
import os
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import torch  # noqa: E402


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)"""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    from mosqa import dnsmos, predict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("list", type=Path)
    ap.add_argument("--model", default="pesq-wb")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    paths = [Path(line.strip()) for line in args.list.read_text().splitlines() if line.strip()]
    predictor = predict.Predictor(predict.Options(model=args.model, device="cpu"))
    predictor.score_group(paths[:1])
    rows, wall, cpu = timed(lambda: predictor.score_group(paths))
    audio = sum(r["len_in_sec"] for r in rows)
    scorer = dnsmos.Scorer(threads=1)
    scorer.score_file(str(paths[0]))
    _, d_wall, d_cpu = timed(lambda: [scorer.score_file(str(p)) for p in paths])
    n = len(paths)
    print(f"files: {n}, {audio:.0f} s of audio; one thread each; load average {os.getloadavg()[0]:.1f}")
    print(f"predict --model {args.model:10s} {wall:7.2f} s wall {n / wall:7.2f} files/s  "
          f"real-time factor {audio / wall:6.0f}x wall, {audio / cpu:6.0f}x CPU")
    print(f"dnsmos (P.835 + P.808)     {d_wall:7.2f} s wall {n / d_wall:7.2f} files/s  "
          f"real-time factor {audio / d_wall:6.0f}x wall, {audio / d_cpu:6.0f}x CPU")
    print(f"predict / dnsmos files/s:  {d_wall / wall:.2f}x wall, {d_cpu / cpu:.2f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
