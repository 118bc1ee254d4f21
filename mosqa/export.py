"""A quality model as one ONNX graph, waveform in, scores out (`mosqa export`), and how `mosqa predict
--engine onnx` finds it without torch.

The graph is traced from the scorer itself (mosqa.qa.load_qa), in float32, so the features keep one
definition (mosqa.frontend, mosqa.distill_mos) and the graph follows whatever the scorer computes. Two
forms, by what the scorer reads:
- padded (a train-qa model, which masks padding): inputs `wav` (batch, samples) float32 at the model's
  rate and `lengths` (batch,) int64 valid samples per row; output `score` (batch,);
- unpadded (a scorer with `max_samples`, the Distill-MOS encoder's, which reads each input alone):
  input `wav` (batch, samples), every row whole and of one length, at most max_samples; outputs every
  output of the scorer's `full` (score, the diagnostics, listener_mos), each (batch,).
Both axes are dynamic. Metadata: the sample rate, max_samples where there is one, and the SHA-256 of the
checkpoint it came from, so a graph left beside a best.pt that was trained further is refused, not
silently used. Weights that float16 holds exactly (the encoder's, shipped as float16) are stored so, with
a cast back to float32 when the graph loads: half the file, the same numbers.

Only `export_onnx` and its helpers import torch; the rest serves the torch-free scoring path.
"""

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from mosqa.errors import MosqaError

ONNX_NAME = "model.onnx"  # beside best.pt in a run directory or a shipped model's folder
OPSET = 18
# Largest difference to torch an export may have, checked before writing: on a MOS (1-5), and the same
# share of the range on a diagnostic (e.g. 0.2 Hz of band_high_hz's 0-8000 Hz).
TOLERANCE = 1e-4
MOS_SPAN = 4.0
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


def dft_spectrum(module):
    """mosqa.distill_mos.CompressedSpectrum as framing and one float64 product with a Hann-windowed DFT
    basis: onnxruntime runs the STFT of a 320-sample frame (not a power of two) as a slow float32 DFT
    (10% of the encoder's time, and 1e-2 off torch's, see CompressedSpectrum); the product takes 1.5%."""
    import torch
    import torch.nn.functional as F

    from mosqa.distill_mos import HOP, WIN, compress

    class DftSpectrum(torch.nn.Module):
        def forward(self, wav):
            # The basis is built in the graph (onnxruntime folds it when it loads): 0.8 MB less file.
            n = torch.arange(WIN, dtype=torch.float64, device=wav.device)
            turns = torch.remainder(n[:, None] * n[None, : WIN // 2 + 1], WIN)  # exact: small integers
            angle = 2 * math.pi * turns / WIN
            window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / WIN)  # periodic Hann, as torch.hann_window
            basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * window[:, None]
            pad = (WIN - HOP) // 2
            x = F.pad(wav.double()[:, None], (pad, pad), mode="reflect")[:, 0]
            count = (x.shape[1] - WIN) // HOP + 1
            frames = torch.arange(count, device=x.device)[:, None] * HOP + torch.arange(WIN, device=x.device)
            real, imag = (x[:, frames] @ basis).transpose(1, 2).chunk(2, dim=1)  # (B, bins, frames) each
            return compress(real, imag).float()

    return DftSpectrum()


def _swaps():
    """Modules the exporter cannot translate, or onnxruntime runs slowly -> an equivalent."""
    from torch import nn

    from mosqa.distill_mos import CompressedSpectrum

    return {nn.AdaptiveMaxPool2d: windowed_max_pool, CompressedSpectrum: dft_spectrum}


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


def halve_exact(model) -> None:
    """Store each float32 weight that float16 represents exactly as float16 plus a Cast to float32, which
    onnxruntime folds when it loads the graph: the numbers do not change, the file halves."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        with np.errstate(over="ignore"):  # a value beyond float16's range is not exact: it stays float32
            half = value.astype(np.float16)
        if value.size < 1024 or not np.array_equal(half.astype(np.float32), value):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__float16"))
        casts.append(helper.make_node("Cast", [init.name], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)  # the casts before every use: a graph's nodes are in topological order
    del graph.node[:]
    graph.node.extend(nodes)


@dataclass
class GraphForm:
    """What export traces and how it checks the graph: `module(*args)` is traced with `inputs`, `outputs`
    and `dynamic` axes; `reference(feed)` is torch's {output: (values, scale)} on each of `cases`, the
    probe feeds, a scale being what one MOS of difference is worth in that output."""

    module: object
    args: tuple
    inputs: list
    outputs: list
    dynamic: dict
    cases: list
    reference: object


def _largest_difference(session, form: GraphForm) -> float:
    """The largest difference between the graph's outputs and torch's over every probe case, in MOS
    (each output's difference divided by its scale)."""
    import numpy as np

    worst = 0.0
    for feed in form.cases:
        expected = form.reference(feed)
        got = session.run(list(expected), feed)
        for g, (w, scale) in zip(got, expected.values(), strict=True):
            if not np.all(np.isfinite(g)):
                return math.inf
            worst = max(worst, float(np.max(np.abs(g - w))) / scale)
    return worst


def export_onnx(spec, out=None) -> Path:
    """Write the ONNX graph of quality model `spec` (run directory, checkpoint or shipped name) to `out`
    (default: model.onnx beside its best.pt) after checking that onnxruntime computes every output of a
    probe as torch does (float32 both), to TOLERANCE."""
    import contextlib
    import io
    import logging
    import warnings

    import onnx
    import torch

    from mosqa.audio import atomic_path
    from mosqa.onnx_sessions import onnx_session
    from mosqa.pretrained import resolve
    from mosqa.qa import load_qa
    from mosqa.runs import find_checkpoint

    run_dir, checkpoint = find_checkpoint(resolve(spec))
    scorer = load_qa(checkpoint, precision="fp32")
    out = Path(out) if out is not None else run_dir / ONNX_NAME
    rate = scorer.frontend.sample_rate
    max_samples = getattr(scorer, "max_samples", None)
    form = _unpadded(scorer, rate, max_samples) if max_samples else _padded(scorer, rate)
    silenced = io.StringIO()  # a failing exporter prints the whole traced graph
    with (warnings.catch_warnings(), torch.inference_mode(False), contextlib.redirect_stdout(silenced),
          contextlib.redirect_stderr(silenced)):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
        try:
            # optimize=False: onnxscript's optimiser folds `mel + 1e-10` into `mel` (it takes 1e-10 for
            # zero), so log(0) = -inf on digital silence; onnxruntime optimises the graph when it loads.
            program = torch.onnx.export(
                exportable(form.module), form.args, input_names=form.inputs, output_names=form.outputs,
                dynamic_shapes=form.dynamic, dynamo=True, optimize=False, opset_version=OPSET, verbose=False)
        except Exception as exc:  # torch raises many types
            raise MosqaError(f"{spec}: torch cannot export this {scorer.config['arch']} model to ONNX "
                             f"({export_failure(exc)})") from None
    model = program.model_proto
    halve_exact(model)
    meta = {"sample_rate": str(rate), "checkpoint_sha256": sha256(checkpoint), "source": run_dir.name,
            "arch": scorer.config["arch"]} | ({"max_samples": str(max_samples)} if max_samples else {})
    onnx.helper.set_model_props(model, meta)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        with torch.no_grad():
            worst = _largest_difference(onnx_session(tmp, threads=1), form)
        if worst > TOLERANCE:
            raise MosqaError(f"{spec}: the exported graph scores differently from torch (by {worst:.2g} > "
                             f"{TOLERANCE:g}); not written")
    return out


def _padded(scorer, rate: int) -> GraphForm:
    """A train-qa model's graph: (wav, lengths) -> score, checked on the probe batch."""
    import torch

    wav, lengths = probe(rate)
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=int(MIN_SECONDS * rate))
    feed = {"wav": wav.numpy(), "lengths": lengths.numpy()}

    def reference(feed):
        score = scorer(torch.from_numpy(feed["wav"]), torch.from_numpy(feed["lengths"])).numpy()
        return {"score": (score, 1.0)}

    return GraphForm(scorer, (wav, lengths), ["wav", "lengths"], ["score"],
                     {"wav": {0: batch, 1: samples}, "lengths": {0: batch}}, [feed], reference)


def _unpadded(scorer, rate: int, max_samples: int) -> GraphForm:
    """An encoder scorer's graph: wav (rows of one length) -> every output of `full`, checked on the whole
    probe batch and on each of its rows alone at its own length."""
    import torch

    wav, lengths = probe(rate)
    with torch.no_grad():
        names = list(scorer.full(wav[:1]))
    scales = {name: _scale(name) for name in names}

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scorer = scorer

        def forward(self, wav):
            return tuple(self.scorer.full(wav).values())

    def reference(feed):
        out = scorer.full(torch.from_numpy(feed["wav"]))
        return {name: (out[name].numpy(), scales[name]) for name in names}

    batch = torch.export.Dim("batch")
    samples = torch.export.Dim("samples", min=int(MIN_SECONDS * rate), max=max_samples)
    cases = [{"wav": wav.numpy()}] + [{"wav": wav[i:i + 1, :k].numpy()} for i, k in enumerate(lengths)]
    return GraphForm(Outputs(), (wav,), ["wav"], names, {"wav": {0: batch, 1: samples}}, cases, reference)


def _scale(name: str) -> float:
    """What one MOS of difference is worth in an output: 1 for a MOS, a diagnostic's range / MOS_SPAN."""
    from mosqa.diagnostics import TARGETS

    return (TARGETS[name].high - TARGETS[name].low) / MOS_SPAN if name in TARGETS else 1.0
