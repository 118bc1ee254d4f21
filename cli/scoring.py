"""What the two scoring commands (dnsmos, predict) share: their inputs, --shard and the summary table."""

import typer

AUDIO_PATHS = typer.Argument(None, help="Audio files and folders (searched recursively, symlinked folders "
                             "followed). Default: none; then give --list.")
AUDIO_LISTS = typer.Option([], "--list", help="A list of audio paths (repeatable): one path per line, or any "
                           "mosqa list or CSV with a path column; scores in it are ignored. Default: none.")
SHARD = typer.Option(None, "--shard", help="K/N: score only the K-th of N contiguous blocks of the files "
                     "(e.g. --shard $SLURM_ARRAY_TASK_ID/N); the N CSVs, headers dropped after the first, "
                     "concatenate to the unsharded CSV. Default: all files.")


def summary_table(title: str, summary: dict):
    """Rich table of a score summary (`mosqa.dnsmos.summarize`): count, mean ± std, 95 % CI per score."""
    from rich.table import Table

    table = Table(title=title)
    for header in ("score", "count", "mean ± std", "95% CI"):
        table.add_column(header, justify="left" if header == "score" else "right")
    for name, s in summary.items():
        table.add_row(name, str(s["count"]), f"{s['mean']:.3f} ± {s['std']:.3f}",
                      f"{s['ci95_low']:.3f} – {s['ci95_high']:.3f}")
    return table
