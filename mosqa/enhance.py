"""`mosqa enhance`: run a trained enhancer over files, folders or lists.

Long files are processed in chunks of `chunk` samples plus `overlap` samples of the next chunk;
neighbouring outputs are crossfaded over the overlap, which also hides the warm-up of a causal
model at each chunk start. The model never sees more than chunk + overlap samples, so its memory
stays flat whatever the file length.
"""

import csv
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mosqa.audio import AUDIO_SUFFIXES, atomic_path, find_audio, load_audio_native, resample, write_audio
from mosqa.errors import MosqaError
from mosqa.lists import read_list
from mosqa.progress import progress_bar
from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config
from mosqa.se_models import build_se_model


def load_se(run_dir, device="cpu") -> tuple[torch.nn.Module, dict]:
    """A train-se run directory (or checkpoint) -> (model in eval mode, its config)."""
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


def collect_inputs(inputs) -> list[tuple[Path, Path]]:
    """(audio path, relative output name) for files, folders (recursive) and list files."""
    found = []
    for raw in inputs:
        src = Path(raw)
        if src.is_dir():
            files = find_audio(src)
            if not files:
                raise MosqaError(f"{src}: folder holds no audio files")
            found += [(p, p.relative_to(src).with_suffix(".wav")) for p in files]
        elif src.suffix.lower() in AUDIO_SUFFIXES:
            if not src.is_file():
                raise MosqaError(f"{src}: no such audio file")
            found.append((src, Path(src.name).with_suffix(".wav")))
        else:
            for it in read_list(src, require_score=False, score_range=None):
                if not it.path.is_file():
                    raise MosqaError(f"{it.where}: no such audio file {it.path}")
                found.append((it.path, Path(it.path.name).with_suffix(".wav")))
    seen: dict[Path, Path] = {}
    for path, name in found:
        if name in seen and seen[name] != path:
            raise MosqaError(f"{path}: output name {name} clashes with {seen[name]}; enhance them separately")
        seen[name] = path
    return found


def enhance_files(
    run_dir,
    inputs,
    out_dir,
    *,
    device="cpu",
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 0.5,
    score: bool = False,
    console: Console | None = None,
) -> list[dict]:
    """Enhance every input into `out_dir` at the input's own rate; optionally DNSMOS-score the results."""
    if chunk_seconds <= 0 or overlap_seconds < 0:
        raise MosqaError("--chunk-seconds must be > 0 and --overlap-seconds >= 0")
    model, cfg = load_se(run_dir, device)
    sr = cfg["sample_rate"]
    files = collect_inputs(inputs)
    out_dir = Path(out_dir)
    scorer = None
    if score:
        from mosqa.dnsmos import Scorer

        scorer = Scorer()
    chunk, overlap = int(chunk_seconds * sr), int(overlap_seconds * sr)
    rows = []
    with progress_bar() as prog:
        task = prog.add_task("enhance", total=len(files))
        for path, name in files:
            wav, file_sr = load_audio_native(path)
            est = enhance_wave(model, resample(wav, file_sr, sr), chunk, overlap, device)
            est = np.clip(resample(est, sr, file_sr)[: len(wav)], -1.0, 1.0)
            target = out_dir / name
            write_audio(target, est, file_sr)
            row = {"input": str(path), "output": str(target)}
            if scorer is not None:
                s = scorer.score(resample(est, file_sr, 16000), 16000)
                row |= {k: s[k] for k in ("OVRL", "SIG", "BAK", "P808_MOS")}
            rows.append(row)
            prog.advance(task)
    if scorer is not None:
        write_scores(out_dir / "dnsmos.csv", rows)
        table = Table(title=f"DNSMOS of enhanced files ({out_dir / 'dnsmos.csv'})")
        for col in ("output", "OVRL", "SIG", "BAK", "P808_MOS"):
            table.add_column(col, justify="left" if col == "output" else "right")
        for r in rows:
            table.add_row(Path(r["output"]).name, *(f"{r[k]:.3f}" for k in list(r)[2:]))
        (console or Console()).print(table)
    return rows


def write_scores(path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
