"""`mosqa predict`: parse options, score files with mosqa.predict, print a summary table."""

from pathlib import Path

import typer

from cli.scoring import AUDIO_LISTS, AUDIO_PATHS, SHARD, checked_files, summary_table


def command(
    paths: list[Path] = AUDIO_PATHS,
    list_files: list[Path] = AUDIO_LISTS,
    model: str = typer.Option("pesq-wb", "--model", "-m", help="A shipped model's name (pesq-wb: predicts "
                              "wideband PESQ in `score`, and listeners' MOS in `listener_mos`, Distill-MOS's "
                              "own output; pesq-wb-nisqa: `score` only) or a train-qa run directory / "
                              "checkpoint (`score` only)."),
    out: Path = typer.Option(Path("scores.csv"), "--out", "-o", help="Per-file scores (CSV)."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes, one thread each. Default: one "
                             "per core when there are many files on CPU, else 1."),
    device: str = typer.Option("auto", help="auto (cuda when a GPU is present) | cpu | cuda."),
    engine: str = typer.Option("auto", help="What runs the model: onnx (onnxruntime on the model's "
                               "model.onnx, no torch needed) | torch | auto (torch on a GPU, for bf16 or "
                               "when the model has no model.onnx, else onnx)."),
    precision: str = typer.Option("fp32", help="fp32 | bf16: bf16 runs the torch engine's model under "
                                  "bfloat16 autocast (scores move by ~0.01; faster only on hardware with "
                                  "bfloat16 arithmetic: 50-80x slower on an AVX2-only CPU). Default fp32, as "
                                  "the onnx engine, so both engines give the same scores (to 1e-4)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Chunks scored per forward pass (and files per "
                                   "worker task)."),
    chunk_seconds: float = typer.Option(8.0, "--chunk-seconds", help="Longer files are cut into equal chunks "
                                        "at most this long (and, for pesq-wb, at most 7.68 s: its encoder's "
                                        "window); the file's scores are their duration-weighted means."),
    diagnose: bool = typer.Option(False, "--diagnose", help="Add why a clip sounds bad, from the model's "
                                  "diagnostic heads: snr_db, drr_db (reverberation), clipped_share, "
                                  "band_high_hz (band limit), loss_rate (packet loss) and codec (probability "
                                  "of a speech codec). Needs a model with those heads (pesq-wb). "
                                  "Default: off."),
    shard: str = SHARD,
):
    """Score audio with a non-intrusive quality model: one score per file, no reference needed.

    Files of 0.5 s to 10 min, any sample rate and channel count (downmixed, resampled to the model's
    rate). With pesq-wb, the default, each row has `score` (predicted wideband PESQ) and `listener_mos`
    (the MOS listeners would give, from the Distill-MOS encoder's own head, on the same windows). A file
    that cannot be scored gets an `error` in the CSV and the exit status is 1.
    """
    from rich.console import Console

    from mosqa import dnsmos, predict
    from mosqa.checks import writes_stdout
    from mosqa.errors import MosqaError
    from mosqa.progress import progress_bar

    if not paths and not list_files:
        raise MosqaError("usage: mosqa predict PATH... [--list FILE]: give audio files, folders or a list")
    files = checked_files(paths, list_files, shard, {"--out": out})
    if diagnose:
        predict.check_diagnose(model)
    engine, device_name = predict.resolve_engine(engine, model, device, precision)
    options = predict.Options(model=model, device=device_name, batch_size=batch_size,
                              chunk_seconds=chunk_seconds, engine=engine, diagnose=diagnose,
                              precision=precision)
    jobs = jobs or predict.default_jobs(len(files), device_name)
    predictor = predict.Predictor(options)
    console = Console(stderr=True)
    with progress_bar(console) as bar:
        task = bar.add_task("predict", total=len(files))
        rows = predict.score_files(files, options, jobs=jobs, progress=lambda n: bar.advance(task, n),
                                   predictor=predictor)
    columns = predictor.columns
    dnsmos.write_csv(out, rows, predict.COLUMNS + columns[1:])
    summary = dnsmos.summarize(rows, columns)
    Console(stderr=writes_stdout(out)).print(summary_table(f"{model}: {len(rows)} file(s)", summary))
    warned = [r for r in rows if "warning" in r]
    if warned:
        console.print(f"[yellow]warning:[/] {len(warned)} file(s) scored but silent, e.g. "
                      f"{warned[0]['filename']} (the warning column of {out})",
                      highlight=False, soft_wrap=True)
    failed = [r for r in rows if "error" in r]
    for r in failed:
        console.print(f"[red]failed:[/] {r['error']}", highlight=False, soft_wrap=True)
    console.print(f"scores written to {out}")
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(rows)} file(s) could not be scored[/]")
        raise typer.Exit(1)
