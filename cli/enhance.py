"""`mosqa enhance`: parse options, hand them to mosqa.enhance (or compare runs)."""

from pathlib import Path

import typer


def command(
    paths: list[Path] = typer.Argument(..., help="RUN_DIR then INPUT... (audio files, folders searched "
                                       "recursively, lists: one path per line or any list with a path "
                                       "column); with --compare: train-se run directories."),
    out_dir: Path = typer.Option(None, "--out-dir", "-o", help="Where the enhanced wavs go (same relative "
                                 "names, .wav), or compare.csv with --compare. Required to enhance; an "
                                 "output that would overwrite an input is refused. No default."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available) | cpu | cuda[:N]."),
    chunk_seconds: float = typer.Option(10.0, "--chunk-seconds", help="Process long files in chunks of this "
                                        "many seconds, so memory stays flat."),
    overlap_seconds: float = typer.Option(0.5, "--overlap-seconds", help="Seconds of overlap between chunks, "
                                          "crossfaded."),
    score: bool = typer.Option(False, "--score", help="Also DNSMOS-score the enhanced files into "
                               "OUT/dnsmos.csv (OUT/dnsmos_K-of-N.csv with --shard). Default: off."),
    shard: str = typer.Option(None, "--shard", help="K/N: enhance only the K-th of N contiguous blocks of "
                              "the inputs (e.g. --shard $SLURM_ARRAY_TASK_ID/N in an --array=1-N job). "
                              "Default: all."),
    compare: bool = typer.Option(False, "--compare", help="Print one table of train-se runs' validation "
                                 "metrics (plus the noisy input) instead of enhancing. Default: off."),
):
    """Enhance audio with a trained train-se model, or --compare train-se runs.

    Every input is decoded before the first is enhanced, so a bad file stops the run with no output.
    """
    from mosqa.checks import not_an_input, output_file, require_kind
    from mosqa.errors import MosqaError

    if compare:
        from mosqa.evaluate import compare_runs

        out_csv = output_file(out_dir / "compare.csv", "--out-dir") if out_dir else None
        for run in paths:
            require_kind(run, "se", "enhance --compare")
        if out_dir:
            not_an_input([out_csv, out_dir], paths, "--out-dir")
        compare_runs(paths, out_csv=out_csv)
        return
    if len(paths) < 2 or out_dir is None:
        raise MosqaError("usage: mosqa enhance RUN_DIR INPUT... --out-dir DIR")
    from mosqa.enhance import enhance_files
    from mosqa.runs import pick_device

    rows = enhance_files(paths[0], paths[1:], out_dir, device=pick_device(device),
                         chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, score=score,
                         shard_spec=shard)
    typer.echo(f"{len(rows)} file(s) enhanced into {out_dir}")
