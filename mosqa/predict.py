"""Score audio files with a trained quality model (`mosqa predict`): any length, flat memory.

A model sees clips of a few seconds in training, so a long file is cut into equal chunks no longer
than `chunk_seconds` (a 25 s file at 8 s becomes four 6.25 s chunks, never a 1 s tail) and its score
is the duration-weighted mean of the chunk scores (and of each diagnostic, with --diagnose). Chunks
of several files share a batch; a batch is padded to its longest chunk and the model masks the
padding, so batching never changes a score. A batch is scored as soon as it is full, so memory holds
one batch and one file at most, however many and however long the files are.

A model that reads at most `max_samples` at once (the Distill-MOS encoder of pesq-wb: 7.68 s) gets
chunks no longer than that, so each chunk is one of its windows, scored unpadded.

Two engines run the model on those batches: `torch` (mosqa.qa.load_qa) and `onnx` (onnxruntime on the
graph mosqa.export writes, the same scorer front end included), both in float32 by default (the torch
engine also runs bfloat16, `precision="bf16"`). Everything else here is shared, and this module imports
torch only when the torch engine is chosen: with the onnx engine, scoring works where torch is not
installed.
"""

import math
from dataclasses import dataclass

import numpy as np

from mosqa.audio import audio_problem, load_audio_native, resample
from mosqa.errors import MosqaError
from mosqa.onnx_sessions import available_cpus
from mosqa.workers import die_with_parent

MIN_SECONDS = 0.5
MAX_SECONDS = 600.0
CHUNK_SECONDS = 8.0
PRECISIONS = ("fp32", "bf16")  # mosqa.qa.PRECISIONS, named here without importing torch
COLUMNS = ["filename", "len_in_sec", "sr", "num_chunks", "score"]
NO_DIAGNOSTICS = ("has no diagnostic heads; --diagnose needs a model trained with them (the campaign's "
                  "distill-mos-ridge, shipped as pesq-wb)")


def score_columns(extra, diagnose: bool) -> list[str]:
    """The CSV's score columns: the score, what the model always adds (pesq-wb: listener_mos), then with
    --diagnose one per diagnostic target."""
    from mosqa.diagnostics import TARGETS

    return ["score", *extra] + (list(TARGETS) if diagnose else [])


@dataclass(frozen=True)
class Options:
    model: str = "pesq-wb"
    device: str = "cpu"
    batch_size: int = 16
    chunk_seconds: float = CHUNK_SECONDS
    engine: str = "torch"
    diagnose: bool = False
    precision: str = "fp32"  # the torch engine's: fp32 or bf16 (onnx graphs are float32)


def diagnostic_heads(model) -> list[str]:
    """The diagnostic outputs a model's config.yaml lists beside its score (the campaign's models have
    them), read without torch or onnxruntime."""
    import yaml

    from mosqa.checks import run_folder
    from mosqa.pretrained import resolve

    cfg = yaml.safe_load((run_folder(resolve(model)) / "config.yaml").read_text())
    return [name for name in (cfg.get("outputs") or []) if name != "score"]


def check_diagnose(model) -> None:
    """--diagnose on a model without diagnostic heads: said before any engine loads, naming the shipped
    models that have them (no engine can add heads a model lacks)."""
    from mosqa.pretrained import names

    if not diagnostic_heads(model):
        having = [name for name in names() if diagnostic_heads(name)]
        raise MosqaError(f"--diagnose: model {model} has no diagnostic heads; use a model that has them"
                         f" ({', '.join('--model ' + name for name in having) or 'none is installed'})")


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


class TorchEngine:
    """The model in torch (load_qa): `score(batch, lengths)` on numpy arrays -> {column: numpy (B,)}."""

    def __init__(self, options: Options, threads: int | None = None):
        import torch

        from mosqa.qa import load_qa

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(options.device)
        self.scorer = load_qa(options.model, device=self.device, precision=options.precision)
        self.sample_rate = self.scorer.frontend.sample_rate
        self.max_samples = getattr(self.scorer, "max_samples", None)
        if options.diagnose and not getattr(self.scorer, "diagnostics", ()):
            raise MosqaError(f"--model {options.model}: {NO_DIAGNOSTICS}")
        self.columns = score_columns(getattr(self.scorer, "columns", ()), options.diagnose)

    def score(self, batch: np.ndarray, lengths: np.ndarray) -> dict:
        import torch

        with torch.inference_mode():
            wav, n = torch.from_numpy(batch).to(self.device), torch.from_numpy(lengths).to(self.device)
            outputs = self.scorer.full(wav, n)
            return {k: outputs[k].float().cpu().numpy() for k in self.columns}


class OnnxEngine:
    """The model's ONNX graph (mosqa.export) in onnxruntime; never imports torch. A graph without a
    `lengths` input reads its rows unpadded: each run gets rows of one length."""

    def __init__(self, options: Options, threads: int | None = None):
        from mosqa.diagnostics import TARGETS
        from mosqa.export import check_fresh, onnx_path
        from mosqa.onnx_sessions import onnx_session

        if options.precision != "fp32":
            raise MosqaError(f"--precision {options.precision}: the onnx engine runs float32 graphs only; "
                             "use --engine torch")
        path = onnx_path(options.model)
        self.session = onnx_session(path, options.device, threads)
        metadata = self.session.get_modelmeta().custom_metadata_map
        check_fresh(path, metadata)
        if "sample_rate" not in metadata:
            raise MosqaError(f"{path}: not a graph written by mosqa export (no sample_rate in its metadata)")
        self.sample_rate = int(metadata["sample_rate"])
        self.max_samples = int(metadata["max_samples"]) if "max_samples" in metadata else None
        self.padded = "lengths" in {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if options.diagnose and not set(TARGETS) <= set(outputs):
            raise MosqaError(f"--model {options.model}: its ONNX graph {NO_DIAGNOSTICS}")
        extra = [o for o in outputs if o != "score" and o not in TARGETS]
        self.columns = score_columns(extra, options.diagnose)

    def score(self, batch: np.ndarray, lengths: np.ndarray) -> dict:
        if self.padded:
            return dict(zip(self.columns, self.session.run(self.columns, {"wav": batch, "lengths": lengths}),
                            strict=True))
        out = {k: np.empty(len(batch), dtype=np.float32) for k in self.columns}
        for n in np.unique(lengths):
            rows = np.flatnonzero(lengths == n)
            got = self.session.run(self.columns, {"wav": batch[rows, :n]})
            for k, v in zip(self.columns, got, strict=True):
                out[k][rows] = v
        return out


def _torch_device(device: str) -> str:
    from mosqa.runs import pick_device

    return str(pick_device(device))


def _onnx_device(device: str) -> str:
    from mosqa.onnx_sessions import resolve_device

    return resolve_device(device)


# --engine: (what runs the model, how it resolves --device)
ENGINES = {"torch": (TorchEngine, _torch_device), "onnx": (OnnxEngine, _onnx_device)}


def resolve_engine(engine: str, model: str, device: str, precision: str = "fp32") -> tuple[str, str]:
    """(engine, device) with auto resolved before any worker starts: torch where torch sees a GPU
    (mosqa.dnsmos's rule, which costs no torch import on a CPU build), where the model has no ONNX
    graph or for bfloat16; onnx otherwise, the lighter engine on CPU (README: predict speed)."""
    from mosqa.dnsmos import pick_engine

    if precision not in PRECISIONS:
        raise MosqaError(f"--precision {precision}: expected {' or '.join(PRECISIONS)}")
    if engine == "auto":
        engine = pick_engine("auto", device) if precision == "fp32" else "torch"
        if engine == "onnx":
            from mosqa.export import onnx_path

            try:
                onnx_path(model)
            except MosqaError:
                engine = "torch"
    elif engine not in ENGINES:
        raise MosqaError(f"--engine {engine}: expected auto, {', '.join(ENGINES)}")
    return engine, ENGINES[engine][1](device)


class Predictor:
    """A loaded engine plus the chunking and batching policy; `score_files` -> rows in input order."""

    def __init__(self, options: Options, threads: int | None = None):
        self.options = options
        self.engine = ENGINES[options.engine][0](options, threads)
        self.sample_rate = self.engine.sample_rate
        self.columns = self.engine.columns
        self.chunk = min(int(options.chunk_seconds * self.sample_rate), self.engine.max_samples or math.inf)

    def score_chunks(self, chunks: list[np.ndarray]) -> list[dict]:
        """{column: value} of each waveform chunk, batched `batch_size` at a time in order of length."""
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
        out: list[dict] = [{}] * len(chunks)
        for start in range(0, len(order), self.options.batch_size):
            idx = order[start:start + self.options.batch_size]
            lengths = np.array([len(chunks[i]) for i in idx], dtype=np.int64)
            batch = np.zeros((len(idx), int(lengths.max())), dtype=np.float32)
            for row, i in enumerate(idx):
                batch[row, : len(chunks[i])] = chunks[i]
            scores = {k: v.tolist() for k, v in self.engine.score(batch, lengths).items()}
            for row, i in enumerate(idx):
                out[i] = {k: float(v[row]) for k, v in scores.items()}
        return out

    def score_group(self, paths: list) -> list[dict]:
        """One row per path: the file's score, or an `error` naming the file.

        Chunks are scored as soon as a batch is full, so memory holds one batch and one file at most.
        """
        rows, pending, sums = [], [], {}

        def flush(count: int) -> None:
            batch = pending[:count]
            del pending[:count]
            for (i, chunk), scores in zip(batch, self.score_chunks([c for _, c in batch]), strict=True):
                weighted, samples = sums.get(i, ({}, 0))
                for k, v in scores.items():
                    weighted[k] = weighted.get(k, 0.0) + v * len(chunk)
                sums[i] = (weighted, samples + len(chunk))

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
            rows[i].update({k: v / samples for k, v in weighted.items()})
        return rows


_worker: dict = {}


def _init_worker(options: Options) -> None:
    die_with_parent()
    _worker["predictor"] = Predictor(options, threads=1)


def _score_in_worker(paths: list) -> list[dict]:
    return _worker["predictor"].score_group(paths)


def score_files(paths, options: Options, jobs: int = 1, progress=None, predictor: Predictor | None = None
                ) -> list[dict]:
    """Rows in input order; `jobs` > 1 scores groups of `batch_size` files in that many processes.

    `progress(n)` is called with the number of files just finished. `predictor`: one already loaded
    for `options` (the CLI's, which read its columns), used in this process.
    """
    groups = [list(paths[i:i + options.batch_size]) for i in range(0, len(paths), options.batch_size)]
    rows = []
    # a bad --model fails here, once, with its own message
    predictor = predictor or Predictor(options)
    if jobs <= 1 or len(groups) == 1:
        for group in groups:
            rows += predictor.score_group(group)
            if progress:
                progress(len(group))
        return rows
    import multiprocessing

    # spawn: a forked child would inherit torch's or onnxruntime's thread pool in an undefined state
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(jobs, len(groups)), _init_worker, (options,)) as pool:
        for group_rows in pool.imap(_score_in_worker, groups):
            rows += group_rows
            if progress:
                progress(len(group_rows))
    return rows


def default_jobs(n_files: int, device: str) -> int:
    """One process per core for many files on CPU; one process (all cores) for few files or a GPU."""
    from mosqa.dnsmos import POOL_MIN_FILES

    return available_cpus() if device == "cpu" and n_files >= POOL_MIN_FILES else 1
