"""`mosqa enhance`: run a trained enhancer over files, folders or lists.

Long files are processed in chunks of `chunk` samples plus `overlap` samples of the next chunk;
neighbouring outputs are crossfaded over the overlap, which also hides the warm-up of a causal
model at each chunk start. The model never sees more than chunk + overlap samples, so its memory
stays flat whatever the file length.
"""

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mosqa.audio import (
    AUDIO_SUFFIXES,
    atomic_csv,
    audio_problem,
    find_audio,
    load_audio_native,
    resample,
    write_audio,
)
from mosqa.checks import check_options, not_an_input, output_dir, require_kind
from mosqa.errors import MosqaError
from mosqa.lists import parse_shard, read_list, shard
from mosqa.progress import progress_bar
from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config
from mosqa.se_models import build_se_model


def load_se(run_dir, device="cpu") -> tuple[torch.nn.Module, dict]:
    """A train-se run directory (or checkpoint) -> (model in eval mode, its config)."""
    require_kind(run_dir, "se", "enhance")
    run_dir, ckpt = find_checkpoint(run_dir)
    cfg = load_run_config(run_dir)
    if "arch" not in cfg or "n_fft" not in cfg:
        raise MosqaError(f"{run_dir}: not a train-se run (config.yaml has no enhancement model)")
    model = build_se_model(cfg | {"identity_init": False})
    try:
        model.load_state_dict(load_checkpoint(ckpt, device)["model"])
    except (KeyError, RuntimeError) as exc:
        raise MosqaError(
            f"{ckpt}: weights do not fit the model in config.yaml ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), cfg


def crossfade(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine fade-in and fade-out that sum to one."""
    t = (np.arange(overlap) + 0.5) / max(overlap, 1)
    fade_in = np.sin(0.5 * np.pi * t) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def enhance_wave(model, wav: np.ndarray, chunk: int, overlap: int, device="cpu") -> np.ndarray:
    """Enhance a 1-D waveform at the model's rate, chunk by chunk with crossfaded overlaps."""
    n = len(wav)
    out = np.zeros(n, dtype=np.float32)
    fade_in, fade_out = crossfade(overlap)
    for start in range(0, n, chunk):
        stop = min(start + chunk + overlap, n)
        x = torch.from_numpy(np.ascontiguousarray(wav[start:stop])).to(device)[None]
        with torch.no_grad():
            y = model(x).float().cpu().numpy()[0]
        if start > 0:  # this chunk's head overlaps the previous chunk's tail
            k = min(overlap, len(y))
            y[:k] *= fade_in[:k]
        if stop < n:
            y[chunk:] *= fade_out[: len(y) - chunk]
        out[start:stop] += y
        if stop == n:
            break
    return out


class Input(NamedTuple):
    """One file to enhance: where it is, its output name below --out-dir, and its list:line (or path)."""

    path: Path
    name: Path
    where: str


def collect_inputs(inputs) -> list[Input]:
    """Files, folders (recursive) and list files (one path per line, or any list with a path column)."""
    found = []
    for raw in inputs:
        src = Path(raw)
        if src.is_dir():
            files = find_audio(src)
            if not files:
                raise MosqaError(f"{src}: folder holds no audio files")
            found += [Input(p, p.relative_to(src).with_suffix(".wav"), str(p)) for p in files]
        elif src.suffix.lower() in AUDIO_SUFFIXES:
            if not src.is_file():
                raise MosqaError(f"{src}: no such audio file")
            found.append(Input(src, Path(src.name).with_suffix(".wav"), str(src)))
        else:
            for it in read_list(src, require_score=False):
                if not it.path.is_file():
                    raise MosqaError(f"{it.where}: no such audio file {it.path}")
                found.append(Input(it.path, Path(it.path.name).with_suffix(".wav"), it.where))
    seen: dict[Path, Path] = {}
    for path, name, _ in found:
        if name in seen and seen[name] != path:
            raise MosqaError(f"{path}: output name {name} clashes with {seen[name]}; enhance them separately")
        seen[name] = path
    return found


def check_inputs(files: list[Input], console: Console) -> None:
    """Decode every input before the first is enhanced: a bad file stops the run before any output.

    Silent or very short files are enhanced anyway (there is no label to spoil), with a warning.
    """
    for f in files:
        try:
            wav, sr = load_audio_native(f.path)
        except MosqaError as exc:
            raise MosqaError(f"{f.where}: {exc}" if f.where != str(f.path) else str(exc)) from None
        problem = audio_problem(wav, sr)
        if problem:
            console.print(f"[yellow]warning:[/] {f.where}: {problem}", highlight=False, soft_wrap=True)


def scores_name(shard_spec: str | None) -> str:
    """dnsmos.csv, or dnsmos_K-of-N.csv so that shards sharing --out-dir keep their own table."""
    parsed = parse_shard(shard_spec)
    return "dnsmos.csv" if parsed is None else "dnsmos_{}-of-{}.csv".format(*parsed)


def enhance_files(
    run_dir,
    inputs,
    out_dir,
    *,
    device="cpu",
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 0.5,
    score: bool = False,
    shard_spec: str | None = None,
    console: Console | None = None,
) -> list[dict]:
    """Enhance every input into `out_dir` at the input's own rate; optionally DNSMOS-score the results.

    Inputs are never overwritten: an output (or `out_dir`) that resolves to an input file, list or
    folder is refused. `shard_spec`
    ('K/N') enhances only the K-th of N contiguous blocks of the inputs (lists.shard).
    """
    console = console or Console(stderr=True)
    check_options({"chunk_seconds": chunk_seconds, "overlap_seconds": overlap_seconds})
    out_dir = output_dir(out_dir, "--out-dir")
    model, cfg = load_se(run_dir, device)
    every = collect_inputs(inputs)
    files = shard(every, shard_spec)
    scores_csv = out_dir / scores_name(shard_spec)
    outputs = [out_dir / f.name for f in files] + ([scores_csv] if score else [])
    not_an_input([*outputs, out_dir], [*(f.path for f in every), *inputs])
    check_inputs(files, console)
    sr = cfg["sample_rate"]
    scorer = None
    if score:
        from mosqa.dnsmos import Scorer

        scorer = Scorer()
    chunk, overlap = int(chunk_seconds * sr), int(overlap_seconds * sr)
    rows = []
    with progress_bar(console) as prog:
        task = prog.add_task("enhance", total=len(files))
        for f in files:
            wav, file_sr = load_audio_native(f.path)
            est = enhance_wave(model, resample(wav, file_sr, sr), chunk, overlap, device)
            est = np.clip(resample(est, sr, file_sr)[: len(wav)], -1.0, 1.0)
            target = out_dir / f.name
            write_audio(target, est, file_sr)
            row = {"input": str(f.path), "output": str(target)}
            if scorer is not None:
                s = scorer.score(resample(est, file_sr, 16000), 16000)
                row |= {k: s[k] for k in ("OVRL", "SIG", "BAK", "P808_MOS")}
            rows.append(row)
            prog.advance(task)
    if scorer is not None and rows:
        write_scores(scores_csv, rows)
        table = Table(title=f"DNSMOS of enhanced files ({scores_csv})")
        for col in ("output", "OVRL", "SIG", "BAK", "P808_MOS"):
            table.add_column(col, justify="left" if col == "output" else "right")
        for r in rows:
            table.add_row(Path(r["output"]).name, *(f"{r[k]:.3f}" for k in list(r)[2:]))
        Console().print(table)
    return rows


def write_scores(path, rows: list[dict]) -> None:
    with atomic_csv(path, list(rows[0])) as w:
        w.writeheader()
        w.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
