"""`mosqa simulate`: parse options, run mosqa.simulate with a progress bar, print the label histogram."""

import os
from pathlib import Path

import typer


def command(
    clean_dir: Path = typer.Argument(None, help="Clean speech folder, searched recursively; the first folder "
                                     "level is the speaker. Omit it (or pass --builtin) for the built-in "
                                     "espeak-ng demo speech (the default)."),
    builtin: bool = typer.Option(False, "--builtin", help="Use the built-in demo speech (6 speakers x "
                                 "6 sentences). Default: off, unless CLEAN_DIR is omitted."),
    out_dir: Path = typer.Option(Path("simulated"), "--out-dir", "-o", help="Where wav/, clean/, all.list, "
                                 "pairs.list and meta.csv go. Rerunning into it resumes."),
    noise_dir: Path = typer.Option(None, "--noise-dir", help="Noise folder (default: generated white, pink, "
                                   "brown and babble noise)."),
    rir_dir: Path = typer.Option(None, "--rir-dir", help="Room impulse response folder (default: synthetic "
                                 "exponential-decay RIRs)."),
    per_utt: int = typer.Option(4, "--per-utt", "-k", help="Degraded versions per clean utterance."),
    seed: int = typer.Option(0, "--seed", help="Clip (utterance i, copy k) is drawn from (seed, i, k): "
                             "the same seed gives the same corpus with any --jobs. Default: 0."),
    max_utts: int = typer.Option(None, "--max-utts", help="Use a seeded random subset of N "
                                 "utterances. Default: all."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes (default: one per core)."),
    snr_range: str = typer.Option("5,55", "--snr-range", help="Additive-noise SNR range in dB, LOW,HIGH. "
                                  "Wideband PESQ is ~1.05 below 10 dB, so the default reaches high to "
                                  "spread labels over 1-4.6."),
    with_stoi: bool = typer.Option(False, "--stoi", help="Also compute STOI (a meta.csv column). "
                                   "Default: off."),
    speaker_map: str = typer.Option(None, "--speaker-map", help="FOLDER=SPEAKER,... for folders that are the "
                                    "same person, e.g. ast_en_allison=allison,ast_es_allison=allison. "
                                    "Default: each folder is its own speaker."),
    no_codecs: bool = typer.Option(False, "--no-codecs", help="No ffmpeg codecs (numpy mu-law only). "
                                 "Default: ffmpeg's codecs when ffmpeg is installed."),
    voice_perturb: float = typer.Option(0.0, "--voice-perturb", help="Speed each clean utterance up or down "
                                        "by a random factor within +-AMOUNT (e.g. 0.2) before degrading it: "
                                        "pitch and formants move, so few recorded voices become many. "
                                        "Default: 0 (off)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh even if OUT holds another run. "
                                   "Default: off (rerunning resumes)."),
):
    """Build a PESQ-labelled corpus the Quality-Net way.

    Each clean utterance gets K degraded versions drawn from additive noise, reverberation, clipping,
    band-limiting, low bit-rate codecs (through ffmpeg when installed; numpy mu-law always) and packet
    loss, singly and combined. Label = wideband PESQ against the clean reference. Writes OUT/wav/*.wav,
    OUT/clean/*.wav (16 kHz references), OUT/all.list (wav,score), OUT/pairs.list (noisy,clean,score),
    OUT/meta.csv (speaker, every degradation parameter, PESQ) and OUT/pesq_hist.png.
    """
    import json

    import numpy as np
    from rich.console import Console

    from cli.prepare_list import histogram_table
    from mosqa import simulate as sim
    from mosqa.audio import atomic_path
    from mosqa.checks import output_dir
    from mosqa.degrade import CODECS, ffmpeg_codecs
    from mosqa.errors import MosqaError
    from mosqa.plots import histogram_png
    from mosqa.prepare import histogram
    from mosqa.progress import progress_bar

    output_dir(out_dir)
    if builtin and clean_dir is not None:
        raise MosqaError("give either CLEAN_DIR or --builtin, not both")
    try:
        low, high = (float(v) for v in snr_range.split(","))
    except ValueError:
        raise MosqaError(f"--snr-range: expected LOW,HIGH in dB, got {snr_range!r}") from None
    if jobs is not None and jobs < 1:
        raise MosqaError(f"--jobs {jobs}: must be at least 1")
    console = Console(stderr=True)
    codecs = () if no_codecs else ffmpeg_codecs()
    if no_codecs:
        console.print("codecs: numpy mu-law only (--no-codecs)")
    elif not codecs:
        console.print("[yellow]note:[/] ffmpeg not found: the codec degradation uses numpy mu-law only; "
                      "install ffmpeg for opus, mp3, gsm, ... ")
    else:
        missing = sorted(set(CODECS) - set(codecs))
        console.print(f"codecs: mulaw, {', '.join(codecs)}" + (f" (this ffmpeg lacks {', '.join(missing)})"
                                                               if missing else ""))
    with progress_bar(console) as bar:
        task = bar.add_task("simulate", total=None)
        summary = sim.simulate(clean_dir, out_dir=out_dir, noise_dir=noise_dir, rir_dir=rir_dir,
                               per_utt=per_utt, seed=seed, max_utts=max_utts,
                               jobs=jobs or os.cpu_count() or 1,
                               snr_range=(low, high), with_stoi=with_stoi,
                               speaker_map=sim.parse_speaker_map(speaker_map), overwrite=overwrite,
                               use_codecs=not no_codecs, voice_perturb=voice_perturb,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    scores = summary.pop("pesq")
    edges = np.round(np.arange(1.0, 5.0001, 0.25), 2)
    Console().print(histogram_table("PESQ-WB labels", {"clips": histogram(scores, edges)}, edges))
    histogram_png(out_dir / "pesq_hist.png", {"PESQ-WB": scores}, edges)
    summary.update(pesq_mean=float(np.mean(scores)), pesq_std=float(np.std(scores)),
                   pesq_min=float(np.min(scores)), pesq_max=float(np.max(scores)))
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    rate = summary["clips_per_second"]
    console.print(f"{summary['clips']} clips labelled ({summary['new_clips']} new"
                  + (f", {rate:.2f} clips/s" if rate else "") + f"); PESQ mean "
                  f"{summary['pesq_mean']:.2f} ± {summary['pesq_std']:.2f}; written to {out_dir}")
    for reason, count in summary["skipped"].items():
        console.print(f"[yellow]skipped {count}:[/] {reason}", highlight=False)
