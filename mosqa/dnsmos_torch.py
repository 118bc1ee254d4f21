"""DNSMOS's networks in torch, weights read at run time from the official ONNX files.

Why: the ONNX graphs are opaque to autograd and run one segment at a time. The same layers in torch
give gradients to the waveform (DNSMOS as a training loss), batch segments on a GPU, and on CPU can use
a Winograd convolution (NNPACK), which needs fewer multiplications than the direct one (on this
project's 2-core CPU it measured only as fast as oneDNN's direct convolution: README, `--engine`).

The layers were read from the graphs (onnx.load, node list, initializer shapes):
- P.835: 144160 samples -> 900 frames of 320 samples (hop 160, no window in the framing; the window is
  folded into two 1x1 "STFT" convolutions of 161 bins, real and imaginary) -> log10(max(|X|^2, 1e-12))
  -> seven 3x3 convolutions with ReLU (128, 64, 64, 32, pool, 32, pool, 32, pool, 64) -> global max over
  time and frequency -> dense 128, 64 (ReLU), 3 = SIG, BAK, OVRL raw.
- P.808: log-mel (900, 120) -> five 3x3 convolutions with ReLU (32, pool, 32, pool, 32, 32, pool, 64)
  -> global max -> dense 64, 64 (ReLU), 1.
The layer list is read from each graph's nodes, and a graph with other kinds of layers is refused.
"""

import ctypes
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosqa import dnsmos_spec
from mosqa.errors import MosqaError

LOG_FLOOR = 1e-12  # the graph's Maximum before Log
LN10 = 2.3025851249694824  # the graph divides ln by this float32 constant
STFT_KERNELS = ("time2freq/stft-real/kernel:0", "time2freq/stft-imag/kernel:0")
FRAME_HOP = 160
P808_TRIM = dnsmos_spec.P808_TRIM


# Winograd only where both channel counts reach this (128->64, 64->64): there it measured as fast as the
# direct convolution, on the narrower layers slower
WIDE = 64
WINOGRAD_TOLERANCE = 1e-4  # relative error allowed of NNPACK on a probe layer before we use it
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters


# ---------------------------------------------------------------- convolution algorithms
def direct_conv(x, weight, bias):
    """oneDNN's direct convolution; channels-last measured 10-40 % faster than NCHW on CPU."""
    cl = torch.channels_last
    return F.conv2d(x.contiguous(memory_format=cl), weight.contiguous(memory_format=cl), bias, padding=1)


def winograd_conv(x, weight, bias):
    """NNPACK's Winograd F(6x6, 3x3): about 5x fewer multiplications, relative error ~1e-5."""
    return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1])


@functools.lru_cache(maxsize=1)
def winograd_available() -> bool:
    """NNPACK is in this torch build, runs on this CPU, and agrees with the direct convolution on a probe
    layer. (is_available() also initialises NNPACK: without it the first convolution fails.)"""
    if not torch.backends.nnpack.is_available():
        return False
    probe = torch.Generator().manual_seed(0)
    x = torch.rand(1, WIDE, 24, 24, generator=probe)
    weight, bias = torch.randn(WIDE, WIDE, 3, 3, generator=probe) / 24, torch.randn(WIDE, generator=probe)
    try:
        fast = winograd_conv(x, weight, bias)
    except RuntimeError:
        return False
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    return bool((fast - exact).abs().max() <= WINOGRAD_TOLERANCE * exact.abs().max())


CONVOLUTIONS = {"direct": direct_conv, "winograd": winograd_conv}


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next segment instead of unmapping it.

    Each full-resolution activation is 74 MB; glibc maps such blocks fresh and page-faults them in on
    every call, which cost more than the arithmetic (first layer: 64 ms -> 10 ms with this). Process-wide,
    so only the file-scoring engine calls it, in its own process (CLI or pool worker).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without one is a user error."""
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise MosqaError("--device cuda: torch sees no CUDA GPU here")
    if device not in ("cpu", "cuda"):
        raise MosqaError(f"--device {device}: expected auto, cpu or cuda")
    return device


# ---------------------------------------------------------------- reading the graphs
def read_graph(path):
    """(node list, {initializer name: float32 tensor}) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    if not Path(path).is_file():
        raise MosqaError(f"{path}: no such ONNX model file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and onnx's own types
        raise MosqaError(f"{path}: cannot read ONNX model ({str(exc).splitlines()[0]})") from None
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    return list(model.graph.node), weights


# attributes a layer must have for ConvMOS to compute it (3x3 "same" convolutions, 2x2 pooling)
EXPECTED_ATTRIBUTES = {
    "Conv": {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "group": 1},
    "MaxPool": {"kernel_shape": [2, 2], "strides": [2, 2]},
}


def check_attributes(node, path) -> None:
    import onnx

    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    for name, value in EXPECTED_ATTRIBUTES[node.op_type].items():
        if name in attributes and attributes[name] != value:
            raise MosqaError(f"{path}: {node.op_type} {node.name} has {name} {attributes[name]}, "
                             f"the DNSMOS layers have {value}")


def layer_plan(nodes, weights, path) -> tuple[list, list]:
    """Convolutions [(weight, bias, pool_after)] and dense layers [(weight, bias)] in graph order."""
    convs, dense = [], []
    for node in nodes:
        if node.op_type == "Conv" and weights.get(node.input[1], torch.empty(0)).ndim == 4:
            check_attributes(node, path)
            convs.append([weights[node.input[1]], weights[node.input[2]], False])
        elif node.op_type == "MaxPool":
            check_attributes(node, path)
            convs[-1][2] = True
        elif node.op_type == "MatMul":
            dense.append([weights[node.input[1]], None])
        elif node.op_type == "Add" and dense and node.input[1] in weights:
            dense[-1][1] = weights[node.input[1]]
    relus = sum(node.op_type == "Relu" for node in nodes)
    if not convs or not dense or any(b is None for _, b in dense) or relus != len(convs) + len(dense) - 1:
        raise MosqaError(f"{path}: not a DNSMOS graph (expected convolutions and dense layers, each but the "
                         "last followed by ReLU)")
    return [tuple(c) for c in convs], [tuple(d) for d in dense]


class ConvMOS(nn.Module):
    """The shared body: 3x3 convolutions with ReLU (some followed by 2x2 max-pooling), a global max over
    time and frequency, then dense layers with ReLU between them. Any number of frames >= 8 works."""

    def __init__(self, convs, dense, conv: str = "direct"):
        super().__init__()
        wide = [min(w.shape[:2]) >= WIDE for w, _, _ in convs]
        self.algorithms = [conv if is_wide else "direct" for is_wide in wide]
        self.pool_after = [pool for _, _, pool in convs]
        self.conv_weights = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w, _, _ in convs])
        self.conv_biases = nn.ParameterList([nn.Parameter(b, requires_grad=False) for _, b, _ in convs])
        self.dense_weights = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w, _ in dense])
        self.dense_biases = nn.ParameterList([nn.Parameter(b, requires_grad=False) for _, b in dense])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, bins) -> (B, outputs)"""
        on_cpu = x.device.type == "cpu"
        layers = zip(self.conv_weights, self.conv_biases, self.pool_after, self.algorithms, strict=True)
        for w, b, pool, algorithm in layers:
            x = F.relu(CONVOLUTIONS[algorithm if on_cpu else "direct"](x, w, b), inplace=True)
            if pool:  # channels-last pooling measured 10x faster than NCHW on CPU
                x = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2)
        x = x.amax(dim=(2, 3))
        last = len(self.dense_weights) - 1
        for i, (w, b) in enumerate(zip(self.dense_weights, self.dense_biases, strict=True)):
            x = x @ w + b
            if i < last:
                x = F.relu(x)
        return x


class P835Net(nn.Module):
    """Waveform (B, N) at 16 kHz -> raw (B, 3) = SIG, BAK, OVRL, before the calibration polynomials."""

    def __init__(self, path, conv: str = "direct"):
        super().__init__()
        nodes, weights = read_graph(path)
        if not all(k in weights for k in STFT_KERNELS):
            raise MosqaError(f"{path}: not a DNSMOS P.835 graph (no STFT kernels)")
        real, imag = (weights[k][:, :, 0] for k in STFT_KERNELS)  # (161 bins, 320 samples)
        self.register_buffer("stft", torch.cat([real, imag]).T.contiguous())  # (320, 322)
        self.body = ConvMOS(*layer_plan(nodes, weights, path), conv=conv)

    def log_power(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1, (N - 160) // 160, 161): frames of 320 samples every 160, as the graph reshapes.

        The graph takes sqrt(re² + im²) and squares it again; we keep re² + im², equal up to rounding and
        without sqrt's infinite slope at zero."""
        frames = wav.unfold(-1, 2 * FRAME_HOP, FRAME_HOP)
        spec = frames @ self.stft
        bins = spec.shape[-1] // 2
        power = spec[..., :bins] ** 2 + spec[..., bins:] ** 2
        return (torch.log(power.clamp_min(LOG_FLOOR)) / LN10).unsqueeze(1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.body(self.log_power(wav))


class P808Net(nn.Module):
    """Log-mel features (B, frames, 120) -> (B,) P.808 MOS."""

    def __init__(self, path, conv: str = "direct"):
        super().__init__()
        self.body = ConvMOS(*layer_plan(*read_graph(path), path), conv=conv)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features.unsqueeze(1))[:, 0]


# ---------------------------------------------------------------- P.808 features
@functools.lru_cache(maxsize=4)
def _mel_constants(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.from_numpy(dnsmos_spec.periodic_hann(dnsmos_spec.N_FFT)).to(device)
    filterbank = torch.from_numpy(dnsmos_spec.mel_filterbank().T.copy()).to(device)  # (161, 120)
    return window, filterbank


def log_mel(wav: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, 1 + N // 160, 120) in wav's dtype, equal to mosqa.dnsmos.log_mel (float64 inside):
    centred zero-padded STFT (n_fft 321, periodic Hann, hop 160), Slaney mel power, dB re each clip's
    maximum floored 80 dB below it, then (dB + 40) / 40."""
    window, filterbank = _mel_constants(str(wav.device))
    padded = F.pad(wav.double(), (dnsmos_spec.N_FFT // 2, dnsmos_spec.N_FFT // 2))
    spec = torch.fft.rfft(padded.unfold(-1, dnsmos_spec.N_FFT, dnsmos_spec.MEL_HOP) * window, dim=-1)
    mel = (spec.real**2 + spec.imag**2) @ filterbank
    db = 10.0 * torch.log10(mel.clamp_min(dnsmos_spec.AMIN))
    peak = 10.0 * torch.log10(mel.amax(dim=(1, 2), keepdim=True).clamp_min(dnsmos_spec.AMIN))
    db = db - peak
    db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - dnsmos_spec.TOP_DB)
    return ((db + 40.0) / 40.0).to(wav.dtype)


# ---------------------------------------------------------------- file scoring (--engine torch)
class TorchNetworks:
    """The `torch` engine: the interface of mosqa.dnsmos.OnnxNetworks (segments (n, 144160) -> raw P.835
    (n, 3), P.808 (n,)). CPU: Winograd on the wide layers where NNPACK works; CUDA: segments batched."""

    def __init__(self, personalized=False, p808=True, device="cpu", model_dir=None, threads=None):
        self.device = resolve_device(device)
        on_cpu = self.device == "cpu"
        if on_cpu:
            keep_freed_memory()
            if threads:
                torch.set_num_threads(threads)
        conv = "winograd" if on_cpu and winograd_available() else "direct"
        self.batch = dnsmos_spec.CPU_BATCH if on_cpu else dnsmos_spec.GPU_BATCH
        path = dnsmos_spec.model_path(dnsmos_spec.P835_MODELS[personalized], model_dir)
        self.p835_net = P835Net(path, conv).to(self.device).eval()
        p808_path = dnsmos_spec.model_path(dnsmos_spec.P808_MODEL, model_dir)
        self.p808_net = P808Net(p808_path, conv).to(self.device).eval() if p808 else None

    @torch.inference_mode()
    def _run(self, net, segments: np.ndarray, prepare=None) -> np.ndarray:
        out = []
        for i in range(0, len(segments), self.batch):
            x = torch.from_numpy(segments[i : i + self.batch]).to(self.device)
            out.append(net(prepare(x) if prepare else x).cpu())
        return torch.cat(out).numpy()

    def p835(self, segments: np.ndarray) -> np.ndarray:
        return self._run(self.p835_net, segments)

    def p808(self, segments: np.ndarray) -> np.ndarray:
        return self._run(self.p808_net, segments, lambda x: log_mel(x[:, :-P808_TRIM]))


# ---------------------------------------------------------------- differentiable DNSMOS
def polyval(coefficients: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Horner's rule, highest power first, as np.polyval."""
    result = torch.zeros_like(x)
    for c in coefficients:
        result = result * x + c
    return result


class DNSMOS(nn.Module):
    """Waveform (B, N) at 16 kHz, N >= 1 s -> {"SIG", "BAK", "OVRL", "P808"}: (B,) with gradients.

    Segmenting (mosqa.dnsmos.load_torch says how it differs from the reference's): up to 9.01 s the input
    is one segment of its own length; beyond, 9.01 s segments every 1 s (all hops). Each segment's raw
    P.835 scores go through the reference's calibration polynomials, then segments are averaged.
    Direct convolutions (exact to float rounding, on any device; Winograd saves no time on CPU); the
    official graphs' weights, frozen.
    """

    def __init__(self, personalized: bool = False, model_dir=None):
        super().__init__()
        self.p835 = P835Net(dnsmos_spec.model_path(dnsmos_spec.P835_MODELS[personalized], model_dir))
        self.p808 = P808Net(dnsmos_spec.model_path(dnsmos_spec.P808_MODEL, model_dir))
        calibration = dnsmos_spec.CALIBRATION[personalized]
        self.names = list(calibration)  # SIG, BAK, OVRL: the P.835 graph's output order
        degree = max(len(c) for c in calibration.values())
        padded = [[0.0] * (degree - len(c)) + list(c) for c in calibration.values()]
        self.register_buffer("calibration", torch.tensor(padded, dtype=torch.float64).T.contiguous())

    def segments(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, S, L)"""
        if wav.ndim != 2 or wav.shape[-1] < dnsmos_spec.FS:
            raise MosqaError(f"DNSMOS takes a (batch, samples) waveform of at least 1 s at 16 kHz, "
                             f"got shape {tuple(wav.shape)}")
        if wav.shape[-1] <= dnsmos_spec.SEGMENT:
            return wav[:, None]
        return wav.unfold(-1, dnsmos_spec.SEGMENT, dnsmos_spec.HOP)

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        segments = self.segments(wav)
        batch, count, length = segments.shape
        flat = segments.reshape(batch * count, length)
        raw = self.p835(flat).view(batch, count, -1)
        calibrated = polyval(self.calibration.to(raw.dtype), raw).mean(dim=1)
        scores = {name: calibrated[:, i] for i, name in enumerate(self.names)}
        scores["P808"] = self.p808(log_mel(flat[:, :-P808_TRIM])).view(batch, count).mean(dim=1)
        return scores
