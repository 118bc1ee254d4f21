"""What the two scoring commands (dnsmos, predict) share: their inputs and outputs, --shard and the
summary table."""

import typer

AUDIO_PATHS = typer.Argument(None, help="Audio files and folders (searched recursively, symlinked folders "
                             "followed). Default: none; then give --list.")
AUDIO_LISTS = typer.Option([], "--list", help="A list of audio paths (repeatable): one path per line, or any "
                           "mosqa list or CSV with a path column; scores in it are ignored. Default: none.")
SHARD = typer.Option(None, "--shard", help="K/N: score only the K-th of N contiguous blocks of the files "
                     "(e.g. --shard $SLURM_ARRAY_TASK_ID/N); the N CSVs, headers dropped after the first, "
                     "concatenate to the unsharded CSV. Default: all files.")


def checked_files(paths, list_files, shard: str | None, outputs: dict) -> list:
    """The files to score (--shard's block of them), once every output (flag -> path, None = not
    written) can be written and none is an input: audio, list or folder (mosqa.checks' output rule)."""
    from mosqa.checks import not_an_input, output_file
    from mosqa.dnsmos import collect_inputs
    from mosqa.lists import shard as take_shard

    outputs = {flag: path for flag, path in outputs.items() if path is not None}
    for flag, path in outputs.items():
        output_file(path, flag)
    files = collect_inputs(paths or [], list_files)
    for flag, path in outputs.items():
        not_an_input([path], [*(paths or []), *list_files, *files], flag)
    return take_shard(files, shard)


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
