"""Score audio files with a trained quality model (`mosqa predict`): any length, flat memory.

A model sees clips of a few seconds in training, so a long file is cut into equal chunks no longer
than `chunk_seconds` (a 25 s file at 8 s becomes four 6.25 s chunks, never a 1 s tail) and its score
is the duration-weighted mean of the chunk scores. Chunks of several files share a batch; a batch is
padded to its longest chunk and the model masks the padding, so batching never changes a score.
A batch is scored as soon as it is full, so memory holds one batch and one file at most,
however many and however long the files are.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from mosqa.audio import audio_problem, load_audio_native, resample
from mosqa.errors import MosqaError

MIN_SECONDS = 0.5
MAX_SECONDS = 600.0
CHUNK_SECONDS = 8.0
COLUMNS = ["filename", "len_in_sec", "sr", "num_chunks", "score"]
SCORE_COLUMNS = ["score"]


@dataclass(frozen=True)
class Options:
    model: str = "pesq-wb"
    device: str = "cpu"
    batch_size: int = 16
    chunk_seconds: float = CHUNK_SECONDS


def chunk_bounds(n_samples: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) of ceil(n / chunk) equal chunks covering n samples."""
    count = max(1, math.ceil(n_samples / chunk))
    edges = np.linspace(0, n_samples, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def read_file(path, sample_rate: int) -> tuple[np.ndarray, dict]:
    """The model-rate mono waveform and the row's metadata (with a `warning` for a silent file: it is
    scored, but PESQ needs speech, so the number means nothing); MosqaError for files it cannot score."""
    wav, sr = load_audio_native(path)
    problem = audio_problem(wav, sr, MIN_SECONDS, MAX_SECONDS, silence_db=-math.inf)
    if problem is not None:
        raise MosqaError(f"{path}: {problem}")
    row = {"filename": str(path), "len_in_sec": len(wav) / sr, "sr": sr}
    silent = audio_problem(wav, sr, min_seconds=0.0)
    return resample(wav, sr, sample_rate), row | ({"warning": silent} if silent else {})


class Predictor:
    """A loaded scorer plus the chunking and batching policy; `score_files` -> rows in input order."""

    def __init__(self, options: Options):
        from mosqa.qa import load_qa

        self.options = options
        self.device = torch.device(options.device)
        self.scorer = load_qa(options.model, device=self.device)
        self.sample_rate = self.scorer.frontend.sample_rate
        self.chunk = int(options.chunk_seconds * self.sample_rate)

    @torch.inference_mode()
    def score_chunks(self, chunks: list[np.ndarray]) -> list[float]:
        """Scores of waveform chunks, batched `batch_size` at a time in order of length."""
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
        out = [0.0] * len(chunks)
        for start in range(0, len(order), self.options.batch_size):
            idx = order[start:start + self.options.batch_size]
            lengths = torch.tensor([len(chunks[i]) for i in idx])
            batch = torch.zeros(len(idx), int(lengths.max()))
            for row, i in enumerate(idx):
                batch[row, : len(chunks[i])] = torch.from_numpy(chunks[i])
            scores = self.scorer(batch.to(self.device), lengths.to(self.device)).float().cpu().tolist()
            for i, s in zip(idx, scores, strict=True):
                out[i] = s
        return out

    def score_group(self, paths: list) -> list[dict]:
        """One row per path: the file's score, or an `error` naming the file.

        Chunks are scored as soon as a batch is full, so memory holds one batch and one file at most.
        """
        rows, pending, sums = [], [], {}

        def flush(count: int) -> None:
            batch = pending[:count]
            del pending[:count]
            for (i, chunk), s in zip(batch, self.score_chunks([c for _, c in batch]), strict=True):
                weighted, samples = sums.get(i, (0.0, 0))
                sums[i] = (weighted + s * len(chunk), samples + len(chunk))

        for path in paths:
            try:
                wav, row = read_file(path, self.sample_rate)
            except MosqaError as exc:
                rows.append({"filename": str(path), "error": str(exc)})
                continue
            bounds = chunk_bounds(len(wav), self.chunk)
            row["num_chunks"] = len(bounds)
            rows.append(row)
            pending += [(len(rows) - 1, wav[a:b]) for a, b in bounds]
            while len(pending) >= self.options.batch_size:
                flush(self.options.batch_size)
        flush(len(pending))
        for i, (weighted, samples) in sums.items():
            rows[i]["score"] = weighted / samples
        return rows


_worker: dict = {}


def _init_worker(options: Options) -> None:
    torch.set_num_threads(1)
    _worker["predictor"] = Predictor(options)


def _score_in_worker(paths: list) -> list[dict]:
    return _worker["predictor"].score_group(paths)


def score_files(paths, options: Options, jobs: int = 1, progress=None) -> list[dict]:
    """Rows in input order; `jobs` > 1 scores groups of `batch_size` files in that many processes.

    `progress(n)` is called with the number of files just finished.
    """
    groups = [list(paths[i:i + options.batch_size]) for i in range(0, len(paths), options.batch_size)]
    rows = []
    if jobs <= 1 or len(groups) == 1:
        predictor = Predictor(options)
        for group in groups:
            rows += predictor.score_group(group)
            if progress:
                progress(len(group))
        return rows
    import multiprocessing

    Predictor(options)  # a bad --model fails here, once, with its own message
    # spawn: a forked child would inherit torch's thread pool in an undefined state
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(jobs, len(groups)), _init_worker, (options,)) as pool:
        for group_rows in pool.imap(_score_in_worker, groups):
            rows += group_rows
            if progress:
                progress(len(group_rows))
    return rows


def default_jobs(n_files: int, device: str) -> int:
    """One process per core for many files on CPU; one process (all cores) for few files or a GPU."""
    from mosqa.dnsmos import POOL_MIN_FILES, available_cpus

    return available_cpus() if device == "cpu" and n_files >= POOL_MIN_FILES else 1
