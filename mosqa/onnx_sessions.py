"""onnxruntime sessions shared by DNSMOS and SIGMOS, in one place so neither imports the other.

Never imports torch: `mosqa dnsmos` must start fast.

`MOSQA_ORT_PROFILE=DIR` makes every session write onnxruntime's per-node profile under DIR (a bench's
output folder). Profiling switched on by hand writes `onnxruntime_profile__<time>.json` into the working
directory instead, which is how two such files once ended up committed at the repository root.
"""

import os
from pathlib import Path

from mosqa.errors import MosqaError

PROFILE_ENV = "MOSQA_ORT_PROFILE"


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """auto -> cuda when onnxruntime has the CUDA provider, else cpu."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise MosqaError(
            "--device cuda: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        )
    if device not in ("cpu", "cuda"):
        raise MosqaError(f"--device {device}: expected auto, cpu or cuda")
    return device


def onnx_session(path, device: str = "cpu", threads: int | None = None):
    """An inference session whose CPU threads sleep when idle instead of spinning against BLAS threads."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise MosqaError(f"{path}: no such ONNX model file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cpus()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / f"onnxruntime_profile_{path.stem}")
    providers = (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
        raise MosqaError(f"{path}: cannot load ONNX model ({str(exc).splitlines()[0]})") from None
