"""`mosqa dnsmos`: parse options, score with mosqa.dnsmos, print a summary table."""

import os
from pathlib import Path

import typer

from cli.scoring import AUDIO_LISTS, AUDIO_PATHS, SHARD, checked_files, summary_table


def command(
    paths: list[Path] = AUDIO_PATHS,
    list_files: list[Path] = AUDIO_LISTS,
    out: Path = typer.Option(Path("dnsmos.csv"), "--out", "-o", help="Per-file scores (CSV), with a warning "
                             "column for silent or under-1 s files and an error column for unreadable ones."),
    summary_json: Path = typer.Option(None, "--summary-json", help="Also write the summary table as JSON. "
                                      "Default: not written."),
    personalized: bool = typer.Option(False, "--personalized", help="Personalized DNSMOS (interfering "
                                      "talkers count as noise). Default: off."),
    no_p808: bool = typer.Option(False, "--no-p808", help="Skip the P.808 model (no P808_MOS column). "
                                 "Default: P.808 is scored."),
    all_hops: bool = typer.Option(False, "--all-hops", help="Score every 1 s hop; the default skips the hops "
                                  "the reference drops by float rounding, to match its numbers."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes (default: one per core when there "
                             "are 64 files or more on CPU, else one)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when the engine sees a GPU) | cpu | cuda "
                               "(onnx engine: onnxruntime-gpu; torch engine: a GPU torch sees)."),
    engine: str = typer.Option("auto", help="onnx (onnxruntime, no torch import) | torch (mosqa.dnsmos_torch;"
                               " segments batched on CUDA) | auto (torch on a GPU, onnx on CPU, where torch "
                               "measured no faster). Both equal the reference to 1e-4."),
    model_dir: Path = typer.Option(None, "--model-dir", help="Folder with dnsmos_models/ and pdnsmos_models/ "
                                   "(default: the installed speechmos package)."),
    sigmos_model: Path = typer.Option(None, "--sigmos-model", help="SIGMOS ONNX file: adds the seven MOS_* "
                                      "P.804 columns. Default: none."),
    shard: str = SHARD,
):
    """Score audio with DNSMOS P.835 (SIG/BAK/OVRL) and P.808, equal to Microsoft's reference."""
    # One BLAS thread, set before numpy loads, so it does not spin against onnxruntime's threads.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    import json

    from rich.console import Console

    from mosqa import dnsmos
    from mosqa.checks import writes_stdout
    from mosqa.errors import MosqaError
    from mosqa.progress import progress_bar

    if not paths and not list_files:
        raise MosqaError("usage: mosqa dnsmos PATH... [--list FILE]: give audio files, folders or a list")
    files = checked_files(paths, list_files, shard, {"--out": out, "--summary-json": summary_json})
    console = Console(stderr=True)
    with progress_bar(console) as bar:
        task = bar.add_task("dnsmos", total=len(files))
        rows = dnsmos.score_files(files, personalized=personalized, p808=not no_p808, all_hops=all_hops,
                                  device=device, model_dir=model_dir, sigmos_model=sigmos_model, jobs=jobs,
                                  engine=engine, progress=lambda: bar.advance(task))
    columns = dnsmos.output_columns(p808=not no_p808, sigmos=sigmos_model is not None)
    dnsmos.write_csv(out, rows, columns)
    summary = dnsmos.summarize(rows, columns)
    if summary_json is not None:
        from mosqa.audio import atomic_path

        with atomic_path(summary_json) as tmp:
            tmp.write_text(json.dumps({"files": len(rows), "scores": summary}, indent=2) + "\n")

    title = f"DNSMOS{' (personalized)' if personalized else ''}: {len(rows)} file(s)"
    Console(stderr=writes_stdout(out, summary_json)).print(summary_table(title, summary))
    warned = [r for r in rows if "warning" in r]
    if warned:
        console.print(f"[yellow]warning:[/] {len(warned)} file(s) silent or shorter than "
                      f"{dnsmos.WARN_SECONDS:g} s, e.g. {warned[0]['filename']}: {warned[0]['warning']} "
                      f"(the warning column of {out})", highlight=False, soft_wrap=True)
    failed = [r for r in rows if "error" in r]
    for r in failed:
        console.print(f"[red]failed:[/] {r['error']}", highlight=False, soft_wrap=True)
    console.print(f"scores written to {out}" + (f", summary to {summary_json}" if summary_json else ""))
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(rows)} file(s) could not be scored[/]")
        raise typer.Exit(1)
