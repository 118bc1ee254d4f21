"""Per-file score tables shared by the scoring commands (`dnsmos`, `predict`): which files, CSV, summary.

Kept free of torch: `mosqa dnsmos` imports it.
"""

import csv
from pathlib import Path

import numpy as np

from mosqa.audio import atomic_path, find_audio
from mosqa.errors import MosqaError


def collect_inputs(paths, list_files=()) -> list[Path]:
    """Files as given, folders expanded recursively (sorted), then the paths named in each list file."""
    from mosqa.lists import read_list

    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += find_audio(p)
        else:
            found.append(p)
    for list_file in list_files:
        found += [item.path for item in read_list(list_file, require_score=False)]
    if not found:
        raise MosqaError(f"no audio files found in {', '.join(map(str, [*paths, *list_files]))}")
    return found


def _format(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def write_csv(path, rows: list[dict], columns: list[str]) -> None:
    """Atomically; an `error` column is added only when a file failed."""
    if any("error" in r for r in rows):
        columns = [*columns, "error"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row[c]) if c in row else "" for c in columns])


def summarize(rows: list[dict], score_columns: list[str]) -> dict:
    """Per score column over the scored files: count, mean, std, and the 95 % t-interval of the mean."""
    from scipy.stats import t

    summary = {}
    for c in score_columns:
        values = np.array([r[c] for r in rows if c in r and isinstance(r[c], float)])
        if values.size == 0:
            continue
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        half = float(t.ppf(0.975, values.size - 1) * std / np.sqrt(values.size)) if values.size > 1 else 0.0
        mean = float(values.mean())
        summary[c] = {
            "count": int(values.size),
            "mean": mean,
            "std": std,
            "ci95_low": mean - half,
            "ci95_high": mean + half,
        }
    return summary
