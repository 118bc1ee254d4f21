"""`mosqa enhance`: parse options, hand them to mosqa.enhance (or compare runs)."""

from pathlib import Path

import typer


def command(
    paths: list[Path] = typer.Argument(..., help="RUN_DIR then INPUT... (files, folders, lists); "
                                       "with --compare: train-se run directories."),
    out_dir: Path = typer.Option(None, "--out-dir", "-o", help="Where enhanced wavs (or compare.csv) go."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]."),
    chunk_seconds: float = typer.Option(10.0, help="Process long files in chunks of this length."),
    overlap_seconds: float = typer.Option(0.5, help="Crossfaded overlap between chunks."),
    score: bool = typer.Option(False, "--score", help="DNSMOS-score the enhanced files (dnsmos.csv)."),
    compare: bool = typer.Option(False, "--compare", help="Print one table of train-se runs' validation "
                                 "metrics (plus the noisy input) instead of enhancing."),
):
    """Enhance audio with a trained train-se model, or --compare train-se runs."""
    from mosqa.errors import MosqaError

    if compare:
        from mosqa.evaluate import compare_runs

        compare_runs(paths, out_csv=(out_dir / "compare.csv") if out_dir else None)
        return
    if len(paths) < 2 or out_dir is None:
        raise MosqaError("usage: mosqa enhance RUN_DIR INPUT... --out-dir DIR")
    from mosqa.enhance import enhance_files
    from mosqa.runs import pick_device

    rows = enhance_files(paths[0], paths[1:], out_dir, device=pick_device(device),
                         chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, score=score)
    typer.echo(f"{len(rows)} file(s) enhanced into {out_dir}")
