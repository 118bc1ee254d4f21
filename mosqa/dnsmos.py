"""DNSMOS P.835 (SIG/BAK/OVRL) and P.808 scores, equal to Microsoft's reference to 1e-4, and faster.

The official ONNX graphs come from the `speechmos` wheel's data files; only the glue around them is
ours: segmenting, the P.808 log-mel features (numpy, equal to librosa's as the reference calls it),
the per-segment calibration polynomials, and a process pool. Speed comes from keeping one session per
process, onnxruntime threads that sleep instead of spinning, and one BLAS thread per worker, so that
the two thread pools do not fight over the cores (DOMAIN.md §4). The same networks in torch
(mosqa.dnsmos_torch: `--engine torch`, `load_torch` for gradients) plug in where the sessions run.

Never imports torch unless the torch engine is chosen: `mosqa dnsmos` must start fast.
"""

import functools
import importlib.metadata
import math
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mosqa.audio import atomic_csv, audio_problem, find_audio, load_audio_native, resample
from mosqa.dnsmos_spec import (  # noqa: F401 (also read as mosqa.dnsmos.X)
    AMIN,
    CALIBRATION,
    CPU_BATCH,
    FS,
    GPU_BATCH,
    HOP,
    MEL_HOP,
    N_FFT,
    P808_MODEL,
    P808_TRIM,
    P835_MODELS,
    SEGMENT,
    SEGMENT_SECONDS,
    TOP_DB,
    mel_filterbank,
    model_path,
    periodic_hann,
)
from mosqa.errors import MosqaError
from mosqa.onnx_sessions import available_cpus, onnx_session, resolve_device
from mosqa.workers import die_with_parent

POOL_MIN_FILES = 64
META_COLUMNS = ["filename", "len_in_sec", "sr", "num_hops"]
COLUMNS = META_COLUMNS + ["OVRL_raw", "SIG_raw", "BAK_raw", "OVRL", "SIG", "BAK"]
P808_COLUMN = "P808_MOS"
NOTE_COLUMNS = ["warning", "error"]
# Shorter clips are repeated to fill the model's input, so their scores describe a loop, not the clip.
WARN_SECONDS = 1.0
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---------------------------------------------------------------- P.808 features
def mel_power(audio: np.ndarray) -> np.ndarray:
    """Mel power spectrogram (frames, mels) of a centred, zero-padded STFT (n_fft 321, hop 160)."""
    padded = np.pad(np.asarray(audio, dtype=np.float64), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::MEL_HOP]
    spec = np.fft.rfft(frames * periodic_hann(N_FFT), axis=-1)
    power = spec.real**2 + spec.imag**2
    return power @ mel_filterbank().T


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 120) float32: dB re the clip's maximum, floored 80 dB below it, scaled by (x + 40) / 40."""
    mel = mel_power(audio)
    db = 10.0 * np.log10(np.maximum(mel, AMIN)) - 10.0 * np.log10(max(AMIN, float(mel.max())))
    db = np.maximum(db, db.max() - TOP_DB)
    return ((db + 40.0) / 40.0).astype(np.float32)


def p808_features(segment: np.ndarray) -> np.ndarray:
    """(900, 120): the P.808 graph's input for one 144160-sample segment."""
    return log_mel(segment[:-P808_TRIM])


# ---------------------------------------------------------------- segmenting
def repeat_short(audio: np.ndarray) -> np.ndarray:
    """The reference doubles a short clip until it fills one segment; an empty one would loop forever."""
    if audio.size == 0:
        raise MosqaError("empty audio (0 samples)")
    doublings = max(0, math.ceil(math.log2(SEGMENT / audio.size))) if audio.size < SEGMENT else 0
    return np.tile(audio, 2**doublings)


def num_hops(n_samples: int) -> int:
    return int(np.floor(n_samples / FS) - SEGMENT_SECONDS) + 1


def segment_bounds(n_samples: int, all_hops: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each scored segment.

    The reference computes the end as int((i + 9.01) * fs); float rounding makes it one sample short for
    hops 7-23, 119-122, ..., and it silently skips those (DNS-Challenge issue #130). `all_hops` scores them.
    """
    bounds = []
    for i in range(num_hops(n_samples)):
        start = int(i * HOP)
        end = start + SEGMENT if all_hops else int((i + SEGMENT_SECONDS) * HOP)
        if end - start == SEGMENT and end <= n_samples:
            bounds.append((start, end))
    return bounds


# ---------------------------------------------------------------- scoring
def output_columns(p808: bool = True, sigmos: bool = False) -> list[str]:
    """The CSV's columns in the reference's order, then P.808, then SIGMOS's."""
    columns = COLUMNS + ([P808_COLUMN] if p808 else [])
    if sigmos:
        from mosqa.sigmos import COLUMNS as SIGMOS_COLUMNS

        columns += SIGMOS_COLUMNS
    return columns


class OnnxNetworks:
    """The official graphs run by onnxruntime (the `onnx` engine): segments (n, 144160) -> raw P.835
    scores (n, 3) and P.808 scores (n,), with the P.808 features computed in numpy."""

    def __init__(self, personalized=False, p808=True, device="cpu", model_dir=None, threads=None):
        self.device = resolve_device(device)
        self.batch = GPU_BATCH if self.device == "cuda" else CPU_BATCH
        p835_path = model_path(P835_MODELS[personalized], model_dir)
        self.p835_session = onnx_session(p835_path, self.device, threads)
        self.p808_session = (
            onnx_session(model_path(P808_MODEL, model_dir), self.device, threads) if p808 else None
        )

    def _run(self, session, inputs: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                session.run(None, {"input_1": inputs[i : i + self.batch]})[0]
                for i in range(0, len(inputs), self.batch)
            ]
        )

    def p835(self, segments: np.ndarray) -> np.ndarray:
        return self._run(self.p835_session, segments)

    def p808(self, segments: np.ndarray) -> np.ndarray:
        return self._run(self.p808_session, np.stack([p808_features(s) for s in segments]))[:, 0]


def _torch_networks(**options):
    from mosqa.dnsmos_torch import TorchNetworks  # imports torch: only when this engine is chosen

    return TorchNetworks(**options)


def _torch_device(device: str) -> str:
    if device == "cpu":  # nothing to check: spare the main process of a pool the torch import
        return device
    from mosqa.dnsmos_torch import resolve_device as resolve_torch_device

    return resolve_torch_device(device)


# --engine: (what runs the networks, how it resolves --device); Scorer keeps segmenting and calibration
ENGINES = {"onnx": (OnnxNetworks, resolve_device), "torch": (_torch_networks, _torch_device)}


def torch_build_has_cuda() -> bool:
    """From the installed torch's version alone (a `+cpu` build has no CUDA), so that this costs no import."""
    try:
        return "+cpu" not in importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return False


def resolve_engine(engine: str, device: str) -> tuple[str, str]:
    """(engine, device) with auto resolved: what the main process decides before starting workers."""
    engine = pick_engine(engine, device)
    return engine, ENGINES[engine][1](device)


def pick_engine(engine: str, device: str) -> str:
    """`auto`: torch where it is faster at equal scores, i.e. on a GPU that torch sees (segments batched);
    onnx on CPU, where torch's convolutions (Winograd included) measured no faster than onnxruntime's
    (README, DNSMOS speed) and importing torch costs a second."""
    if engine != "auto":
        if engine not in ENGINES:
            raise MosqaError(f"--engine {engine}: expected auto, {', '.join(ENGINES)}")
        return engine
    if device == "cpu" or not torch_build_has_cuda():
        return "onnx"
    import torch

    return "torch" if torch.cuda.is_available() else "onnx"


def load_torch(personalized: bool = False, device="cpu", model_dir=None):
    """Differentiable DNSMOS: a torch module, waveform (B, N) at 16 kHz, N >= 1 s -> {"SIG", "BAK",
    "OVRL", "P808"}: (B,) tensors with gradients to the waveform (see mosqa.dnsmos_torch.DNSMOS).

    Inputs of up to 9.01 s are scored as one segment of their own length: the reference instead repeats
    a short clip until it fills 9.01 s and scores every 1 s hop of the repetition, so short inputs score
    slightly differently (the networks end in a global max, so they accept any length). Longer inputs
    are cut as the reference cuts them (9.01 s segments every 1 s, all hops), each segment's P.835 scores
    go through the reference's calibration polynomials, and the segments are averaged.
    """
    from mosqa.dnsmos_torch import DNSMOS

    return DNSMOS(personalized=personalized, model_dir=model_dir).to(device)


class Scorer:
    """DNSMOS for many clips: models are built once and reused.

    `.score(audio, sr)` returns the CSV's keys (without filename). `all_hops` also scores the segments the
    reference skips; the default reproduces the reference's numbers. `engine` runs the networks: onnx
    (onnxruntime, the official graphs), torch (mosqa.dnsmos_torch) or auto (pick_engine); both engines
    equal the reference to 1e-4.
    """

    def __init__(
        self,
        personalized: bool = False,
        p808: bool = True,
        all_hops: bool = False,
        device: str = "cpu",
        model_dir=None,
        threads: int | None = None,
        sigmos_model=None,
        engine: str = "auto",
    ):
        self.personalized, self.p808, self.all_hops = personalized, p808, all_hops
        self.calibration = {k: np.asarray(v) for k, v in CALIBRATION[personalized].items()}
        self.engine, self.device = resolve_engine(engine, device)
        self.networks = ENGINES[self.engine][0](
            personalized=personalized, p808=p808, device=self.device, model_dir=model_dir, threads=threads
        )
        self.sigmos = None
        if sigmos_model is not None:
            from mosqa.sigmos import SigMOS

            onnx_device = resolve_device("auto") if self.device == "cuda" else "cpu"  # SIGMOS is onnx only
            self.sigmos = SigMOS(sigmos_model, onnx_device, threads)

    @property
    def columns(self) -> list[str]:
        return output_columns(self.p808, self.sigmos is not None)

    def score(self, audio: np.ndarray, sr: int = FS) -> dict:
        """Scores of one mono clip at any rate (resampled to 16 kHz, as load_audio does)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise MosqaError(f"expected mono audio (one dimension), got shape {audio.shape}")
        if not np.all(np.isfinite(audio)):
            raise MosqaError("audio contains NaN or infinite samples")
        wav = resample(audio, sr, FS)
        full = repeat_short(wav)
        bounds = segment_bounds(full.size, self.all_hops)
        segments = np.stack([full[a:b] for a, b in bounds])
        raw = self.networks.p835(segments).astype(np.float64)  # columns SIG, BAK, OVRL
        row = {"len_in_sec": wav.size / FS, "sr": FS, "num_hops": num_hops(full.size)}
        for i, name in enumerate(("SIG", "BAK", "OVRL")):
            row[f"{name}_raw"] = float(raw[:, i].mean())
            row[name] = float(np.polyval(self.calibration[name], raw[:, i]).mean())
        if self.p808:
            row[P808_COLUMN] = float(self.networks.p808(segments).astype(np.float64).mean())
        if self.sigmos:
            row.update(self.sigmos.score(audio, sr))
        return {k: row[k] for k in self.columns if k in row}

    def score_file(self, path) -> dict:
        """One CSV row; a file that cannot be scored gets an `error` naming the reason instead of scores,
        a silent or short one (scored, but the number means little) a `warning`."""
        try:
            audio, sr = load_audio_native(path)
            row = {"filename": str(path), **self.score(audio, sr)}
            problem = audio_problem(audio, sr, min_seconds=WARN_SECONDS)
            return row | ({"warning": problem} if problem else {})
        except MosqaError as exc:
            reason = str(exc)
            return {"filename": str(path), "error": reason if str(path) in reason else f"{path}: {reason}"}


@functools.lru_cache(maxsize=2)
def _default_scorer(personalized: bool) -> Scorer:
    return Scorer(personalized=personalized)


def score(audio: np.ndarray, sr: int = FS, personalized: bool = False) -> dict:
    """Score one clip with the reference's settings (CPU); the sessions are cached for the next call."""
    return _default_scorer(personalized).score(audio, sr)


# ---------------------------------------------------------------- many files
_worker_scorer: Scorer | MosqaError | None = None


def _init_worker(options: dict) -> None:
    """Keep a failure for the first task to report: an initializer that raises makes Pool respawn forever."""
    global _worker_scorer
    die_with_parent()
    try:
        _worker_scorer = Scorer(**options)
    except MosqaError as exc:
        _worker_scorer = exc


def _score_in_worker(path: str) -> dict:
    if isinstance(_worker_scorer, MosqaError):
        raise _worker_scorer
    return _worker_scorer.score_file(path)


@contextmanager
def _environment(values: dict):
    """Set variables for child processes started inside the block, then restore ours."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def plan_jobs(n_files: int, jobs: int | None, device: str) -> tuple[int, int]:
    """(worker processes, threads each): with many files on CPU, one process per core.

    A worker costs about a second to start (imports, two sessions), which a few files do not repay;
    one process then uses every core through onnxruntime's threads.
    """
    cpus = available_cpus()
    if jobs is None:
        jobs = cpus if device == "cpu" and n_files >= POOL_MIN_FILES else 1
    jobs = max(1, min(jobs, n_files))
    return jobs, max(1, cpus // jobs)


def score_files(
    paths,
    *,
    personalized: bool = False,
    p808: bool = True,
    all_hops: bool = False,
    device: str = "auto",
    model_dir=None,
    sigmos_model=None,
    jobs: int | None = None,
    engine: str = "auto",
    progress=None,
) -> list[dict]:
    """One row per path, in input order; `progress()` is called after each file.

    Workers are spawned, so a script that calls this with many files needs the usual
    `if __name__ == "__main__":` guard.
    """
    import multiprocessing

    paths = [str(p) for p in paths]
    engine, device = resolve_engine(engine, device)
    workers, threads = plan_jobs(len(paths), jobs, device)
    options = dict(
        engine=engine,
        personalized=personalized,
        p808=p808,
        all_hops=all_hops,
        device=device,
        model_dir=model_dir,
        threads=threads,
        sigmos_model=sigmos_model,
    )
    rows = []
    if workers == 1:
        scorer = Scorer(**options)
        for path in paths:
            rows.append(scorer.score_file(path))
            if progress:
                progress()
        return rows
    # spawn: onnxruntime and torch are not fork-safe; the children read the thread limits before importing
    with _environment(ONE_THREAD_ENV):
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (options,))
    try:
        for row in pool.imap(_score_in_worker, paths):
            rows.append(row)
            if progress:
                progress()
    finally:
        pool.terminate()
    return rows


# ---------------------------------------------------------------- inputs and outputs
def collect_inputs(paths, list_files=()) -> list[Path]:
    """Files as given, folders expanded recursively (sorted), then the paths named in each list file."""
    from mosqa.lists import read_list

    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += find_audio(p)
        else:
            found.append(p)
    for list_file in list_files:
        found += [item.path for item in read_list(list_file, require_score=False)]
    if not found:
        raise MosqaError(f"no audio files found in {', '.join(map(str, [*paths, *list_files]))}")
    return found


def _format(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def write_csv(path, rows: list[dict], columns: list[str]) -> None:
    """Atomically. The `warning` and `error` columns are always there (empty for a clean file): the same
    header whatever the files, so shards' CSVs concatenate into the unsharded one."""
    columns = [*columns, *NOTE_COLUMNS]
    with atomic_csv(path) as writer:
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row[c]) if c in row else "" for c in columns])


def summarize(rows: list[dict], columns: list[str]) -> dict:
    """Per score column over the scored files: count, mean, std, and the 95 % t-interval of the mean."""
    from scipy.stats import t

    summary = {}
    for c in (c for c in columns if c not in META_COLUMNS):
        values = np.array([r[c] for r in rows if c in r and isinstance(r[c], float)])
        if values.size == 0:
            continue
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        half = float(t.ppf(0.975, values.size - 1) * std / np.sqrt(values.size)) if values.size > 1 else 0.0
        mean = float(values.mean())
        summary[c] = {
            "count": int(values.size),
            "mean": mean,
            "std": std,
            "ci95_low": mean - half,
            "ci95_high": mean + half,
        }
    return summary
