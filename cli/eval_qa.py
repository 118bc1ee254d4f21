"""`mosqa eval-qa`: parse options, hand them to mosqa.evaluate."""

from pathlib import Path

import typer


def command(
    runs: list[Path] = typer.Argument(..., help="train-qa run directories (or their .pt checkpoints); with "
                                      "several (e.g. exp/*/), folders holding no checkpoint are skipped "
                                      "with a warning."),
    list_path: Path = typer.Option(..., "--list", "-l", help="Test list: wav,score or a CSV with a header; a "
                                   "condition/system column adds per-condition metrics."),
    out_dir: Path = typer.Option(None, "--out-dir", "-o", help="Where predictions.csv, metrics.yaml and the "
                                 "scatter plots go (one subfolder per run when there are several). "
                                 "Default: <run>/eval_<list name>/."),
    table: Path = typer.Option(None, "--table", help="Comparison CSV. Default: compare_<list name>.csv in "
                               "--out-dir (or the runs' common folder); metrics.csv for a single run."),
    batch_size: int = typer.Option(16, "--batch-size", help="Clips per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available) | cpu | cuda[:N]."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Feature cache. Default: <run>/../.cache, the "
                                   "one training filled."),
):
    """Evaluate quality models on a test list: MSE, RMSE, LCC, SRCC, KTAU, per condition; compare runs.

    Every run, the list and every clip are checked before the first output is written.
    """
    from mosqa.evaluate import evaluate

    evaluate(runs, list_path, out_dir, table, batch_size, device, cache_dir)
