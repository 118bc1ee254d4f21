"""What Microsoft's DNSMOS fixes, shared by both engines (mosqa.dnsmos runs the ONNX graphs,
mosqa.dnsmos_torch the same layers in torch): rates and segment sizes, model files, calibration
polynomials, the P.808 mel filterbank and window. It imports neither engine, so that dnsmos_torch
needs nothing from dnsmos and the two never import each other.

Never imports torch.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np

from mosqa.errors import MosqaError

FS = 16000
SEGMENT_SECONDS = 9.01
SEGMENT = int(SEGMENT_SECONDS * FS)  # 144160 samples: what the P.835 graph takes
HOP = FS
P808_TRIM = 160  # the P.808 graph sees 144000 samples -> 900 frames
N_FFT = 321
MEL_HOP = 160
N_MELS = 120
TOP_DB = 80.0
AMIN = 1e-10
CPU_BATCH = 1  # batching gains nothing on CPU and one segment per run is what the reference computes
GPU_BATCH = 64

# Per-segment calibration polynomials (highest power first), applied before averaging.
CALIBRATION = {
    False: {
        "SIG": [-0.08397278, 1.22083953, 0.0052439],
        "BAK": [-0.13166888, 1.60915514, -0.39604546],
        "OVRL": [-0.06766283, 1.11546468, 0.04602535],
    },
    True: {
        "SIG": [-0.01019296, 0.02751166, 1.19576786, -0.24348726],
        "BAK": [-0.04976499, 0.44276479, -0.1644611, 0.96883132],
        "OVRL": [-0.00533021, 0.005101, 1.18058466, -0.11236046],
    },
}
# model file names inside the speechmos wheel, per personalized flag
P835_MODELS = {False: "dnsmos_models/sig_bak_ovr.onnx", True: "pdnsmos_models/sig_bak_ovr.onnx"}
P808_MODEL = "dnsmos_models/model_v8.onnx"


def hz_to_mel(hz):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


@functools.lru_cache(maxsize=4)
def mel_filterbank(
    sr: int = FS, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular Slaney filters with area (slaney) normalisation, shape (n_mels, n_fft // 2 + 1).

    The bin frequencies are k·sr/n_fft (rfftfreq), so for the odd n_fft = 321 the top bin is below
    sr/2, as in librosa >= 0.10.
    """
    fmax = sr / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@functools.lru_cache(maxsize=4)
def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)



def model_path(name: str, model_dir=None) -> Path:
    """A model file from --model-dir, else from the installed speechmos package's data files."""
    if model_dir is not None:
        return Path(model_dir) / name
    # find_spec locates the package without running its __init__ (whose imports may need librosa)
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise MosqaError(
            "the speechmos package (which ships the DNSMOS models) is not installed; "
            "pip install speechmos, or pass --model-dir"
        )
    return Path(spec.submodule_search_locations[0]) / name
