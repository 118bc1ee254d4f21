"""`mosqa eval-qa`: parse options, hand them to mosqa.evaluate."""

from pathlib import Path

import typer


def command(
    runs: list[Path] = typer.Argument(..., help="train-qa run directories (or checkpoint files)."),
    list_path: Path = typer.Option(..., "--list", "-l", help="Test list (wav,score[,condition])."),
    out_dir: Path = typer.Option(None, help="Outputs (default <run>/eval_<list name>/)."),
    table: Path = typer.Option(None, help="Comparison CSV (default beside the outputs)."),
    batch_size: int = typer.Option(16),
    device: str = typer.Option("cpu", help="auto | cpu | cuda[:N]."),
    cache_dir: Path = typer.Option(None, help="Feature cache (default <run>/../.cache, as in training)."),
):
    """Evaluate quality models on a test list: MSE, RMSE, LCC, SRCC, KTAU, per condition; compare runs."""
    from mosqa.evaluate import evaluate

    evaluate(runs, list_path, out_dir, table, batch_size, device, cache_dir)
