"""Cost of trained quality models: parameters, training seconds per epoch (from metrics.csv, also
scaled to 2,000 clips) and CPU inference real-time factor on the test list's audio.

Usage: python recipes/bench/qa_speed.py RUN_DIR... --list TEST_LIST [--clips 50] [--threads 1] [--csv OUT]
"""

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from mosqa.audio import load_audio
from mosqa.lists import read_list
from mosqa.qa import load_qa
from mosqa.runs import load_run_config


def epoch_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv") as f:
        return statistics.median(float(r["seconds"]) for r in csv.DictReader(f))


def real_time_factor(scorer, wavs, sr: int) -> float:
    """Compute seconds per second of audio, one clip at a time (what scoring a file costs)."""
    with torch.no_grad():
        scorer(torch.from_numpy(wavs[0])[None])  # warm-up
        start = time.perf_counter()
        for w in wavs:
            scorer(torch.from_numpy(w)[None])
        spent = time.perf_counter() - start
    return spent / (sum(len(w) for w in wavs) / sr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--list", required=True, type=Path)
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    items = read_list(args.list)[: args.clips]
    rows = []
    for run_dir in args.runs:
        scorer = load_qa(run_dir)
        cfg = load_run_config(run_dir)
        n_train = len(read_list(cfg["train"]))
        wavs = [load_audio(it.path, scorer.frontend.sample_rate) for it in items]
        sec = epoch_seconds(run_dir)
        rows.append({"run": run_dir.name, "arch": cfg["arch"],
                     "params": sum(p.numel() for p in scorer.parameters()),
                     "train_clips": n_train, "s_per_epoch": round(sec, 1),
                     "s_per_2000_clips": round(sec * 2000 / n_train, 1),
                     "rtf_cpu": round(real_time_factor(scorer, wavs, scorer.frontend.sample_rate), 4)})
    table = Table(title=f"cost (CPU, {args.threads} thread(s) for RTF)")
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("run", "arch") else "right")
    for r in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    Console(width=160).print(table)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
