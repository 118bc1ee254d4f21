"""A quality model as one ONNX graph, waveform in, score out (`mosqa export`), and how `mosqa predict
--engine onnx` finds it without torch.

The graph is traced from the scorer itself (mosqa.qa.QAScorer): the run's front end (level, STFT, mel)
is in it, so the features keep one definition, in mosqa.frontend. Inputs: `wav` (batch, samples) float32
at the model's rate, `lengths` (batch,) int64 valid samples per row (padding is masked as in torch);
output `score` (batch,). Both axes are dynamic. Metadata: the sample rate, and the SHA-256 of the
checkpoint it came from, so a graph left beside a best.pt that was trained further is refused, not
silently used.

Only `export_onnx` imports torch; the rest serves the torch-free scoring path.
"""

import hashlib
import math
from pathlib import Path

from mosqa.errors import MosqaError

ONNX_NAME = "model.onnx"  # beside best.pt in a run directory or a shipped model's folder
OPSET = 18
TOLERANCE = 1e-4  # largest score difference to torch that an export may have, checked before writing
MIN_SECONDS = 0.25  # shortest input: mosqa predict's shortest chunk (half the shortest --chunk-seconds)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def onnx_path(spec) -> Path:
    """The ONNX file of a model spec: an .onnx file, a run directory or shipped model's folder (its
    model.onnx), or a shipped model's name. Torch-free."""
    from mosqa.checks import run_folder
    from mosqa.pretrained import resolve

    path = resolve(spec)
    if path.is_file() and path.suffix != ".onnx":  # a checkpoint: its run's graph
        path = run_folder(path)
    found = path / ONNX_NAME if path.is_dir() else path
    if not found.is_file():
        raise MosqaError(f"{spec}: no {ONNX_NAME} (make it with `mosqa export {spec}`, or use "
                         "--engine torch)")
    return found


def check_fresh(path, metadata: dict) -> None:
    """Refuse a graph whose best.pt beside it is not the checkpoint it was exported from."""
    checkpoint = Path(path).parent / "best.pt"
    wanted = metadata.get("checkpoint_sha256")
    if wanted and checkpoint.is_file() and sha256(checkpoint) != wanted:
        raise MosqaError(f"{path}: exported from an older {checkpoint.name}; export it again "
                         f"(`mosqa export {Path(path).parent}`)")


def _windows(size: int, out: int):
    """Input indices of adaptive pooling's `out` windows over `size` (floor/ceil bounds), each padded to
    the longest window by repeating its last index, which changes no maximum."""
    import torch

    bounds = [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]
    width = max(end - start for start, end in bounds)
    return torch.tensor([[min(start + j, end - 1) for j in range(width)] for start, end in bounds])


def windowed_max_pool(module):
    """nn.AdaptiveMaxPool2d as gathers and a max: the exporter has no ONNX form for output sizes that do
    not divide the input's (NISQA's 15 -> 7 frames). The same windows, so the same numbers."""
    import torch

    sizes = module.output_size

    class WindowedMaxPool(torch.nn.Module):
        def forward(self, x):
            for dim, out in ((-2, sizes[0]), (-1, sizes[1])):
                index = _windows(x.shape[dim], out)
                picked = x.index_select(dim, index.flatten())
                shape = list(x.shape)
                shape[dim:dim + 1 if dim != -1 else None] = list(index.shape)
                x = picked.reshape(shape).amax(dim)
            return x

    return WindowedMaxPool()


def _swaps():
    """Modules the exporter cannot translate -> an equivalent it can."""
    from torch import nn

    return {nn.AdaptiveMaxPool2d: windowed_max_pool}


def exportable(module):
    """A copy of `module` with every untranslatable submodule replaced by its equivalent."""
    import copy

    module = copy.deepcopy(module)
    swaps = _swaps()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in swaps:
                setattr(parent, name, swaps[type(child)](child))
    return module


def export_failure(exc: BaseException) -> str:
    """Why the exporter failed, in one line: its innermost cause's first line and the place in our code
    it names (the exporter's own message is pages of advice, with colour codes)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith("Caused by:")), None)
    return (lines[0] if lines else type(exc).__name__) + (f" {where}" if where else "")


def probe(sample_rate: int):
    """A padded batch that exercises what the graph must get right: rows of different lengths, padding,
    digital silence inside a clip (log of zero power) and a clip of the shortest length."""
    import torch

    n = int(3 * sample_rate)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n) / sample_rate
    wav = 0.3 * torch.sin(2 * math.pi * 220 * t) * (1 + torch.sin(2 * math.pi * 4 * t)) / 2
    wav = torch.stack([wav, 0.05 * torch.randn(n, generator=g), wav.flip(0)])
    wav[0, n // 3: n // 2] = 0
    lengths = torch.tensor([n, int(2.1 * sample_rate), int(MIN_SECONDS * sample_rate)])
    for row, length in enumerate(lengths):
        wav[row, length:] = 0
    return wav, lengths


def export_onnx(spec, out=None) -> Path:
    """Write the ONNX graph of quality model `spec` (run directory, checkpoint or shipped name) to `out`
    (default: model.onnx beside its best.pt) after checking that onnxruntime scores a probe batch as
    torch does, to TOLERANCE."""
    import contextlib
    import io
    import logging
    import warnings

    import numpy as np
    import onnx
    import torch

    from mosqa.audio import atomic_path
    from mosqa.onnx_sessions import onnx_session
    from mosqa.pretrained import resolve
    from mosqa.qa import load_qa
    from mosqa.runs import find_checkpoint

    run_dir, checkpoint = find_checkpoint(resolve(spec))
    scorer = load_qa(checkpoint)
    out = Path(out) if out is not None else run_dir / ONNX_NAME
    rate = scorer.frontend.sample_rate
    wav, lengths = probe(rate)
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=int(MIN_SECONDS * rate))
    silenced = io.StringIO()  # a failing exporter prints the whole traced graph
    with (warnings.catch_warnings(), torch.inference_mode(False), contextlib.redirect_stdout(silenced),
          contextlib.redirect_stderr(silenced)):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
        try:
            # optimize=False: onnxscript's optimiser folds `mel + 1e-10` into `mel` (it takes 1e-10 for
            # zero), so log(0) = -inf on digital silence; onnxruntime optimises the graph when it loads.
            program = torch.onnx.export(
                exportable(scorer), (wav, lengths), input_names=["wav", "lengths"], output_names=["score"],
                dynamic_shapes={"wav": {0: batch, 1: samples}, "lengths": {0: batch}}, dynamo=True,
                optimize=False, opset_version=OPSET, verbose=False)
        except Exception as exc:  # torch raises many types
            raise MosqaError(f"{spec}: torch cannot export this {scorer.config['arch']} model to ONNX "
                             f"({export_failure(exc)})") from None
    model = program.model_proto
    meta = {"sample_rate": str(rate), "checkpoint_sha256": sha256(checkpoint), "source": run_dir.name,
            "arch": scorer.config["arch"]}
    onnx.helper.set_model_props(model, meta)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        session = onnx_session(tmp, threads=1)
        got = session.run(None, {"wav": wav.numpy(), "lengths": lengths.numpy()})[0]
        with torch.no_grad():
            want = scorer(wav, lengths).numpy()
        worst = float(np.max(np.abs(got - want))) if np.all(np.isfinite(got)) else math.inf
        if worst > TOLERANCE:
            raise MosqaError(f"{spec}: the exported graph scores differently from torch (by {worst:.2g} > "
                             f"{TOLERANCE:g}); not written")
    return out
