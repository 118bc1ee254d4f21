"""mosqa export and `mosqa predict --engine onnx`: the graph scores as torch does, on any length from
0.5 s to 10 min, in a process where torch cannot be imported; stale graphs are refused."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli

from mosqa import export, predict
from mosqa.audio import load_audio
from mosqa.pretrained import PRETRAINED_DIR
from mosqa.runs import load_checkpoint, save_checkpoint

ROOT = Path(__file__).parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "dnsmos"
SPEECH = load_audio(FIXTURES / "speech_10s.flac")
TOL = 1e-4
# Run the CLI where `import torch` fails, as on a machine with the light install (onnxruntime, no torch).
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
from cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    assert "torch" not in sys.modules, "torch was imported"
    raise
"""


def without_torch(*args) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def scores(path) -> dict:
    with open(path, newline="") as f:
        return {Path(r["filename"]).name: float(r["score"]) for r in csv.DictReader(f)}


def write(path, wav, sr=16000):
    sf.write(path, wav, sr, subtype="FLOAT")
    return path


def test_the_blocker_blocks_torch():
    code = NO_TORCH.replace("from cli.main import app", "import torch")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode != 0 and "blocked by the test" in done.stderr


@pytest.mark.slow
def test_onnx_engine_without_torch_scores_as_torch_from_half_a_second_to_ten_minutes(tmp_path):
    rng = np.random.default_rng(0)
    files = sorted(FIXTURES.glob("*.flac"))
    for seconds in (0.5, 1.0, 8.0, 8.01, 25.0):
        n = int(seconds * 16000)
        files.append(write(tmp_path / f"speech_{seconds}s.wav", np.resize(SPEECH, n)))
    # Ten minutes whose noise grows, so that its 75 chunks differ and their weighted mean is tested.
    n = 600 * 16000
    ramp = np.linspace(0.0, 0.2, n, dtype=np.float32)
    long_wav = np.resize(SPEECH, n) + ramp * rng.standard_normal(n).astype(np.float32)
    files.append(write(tmp_path / "ten_minutes.wav", np.clip(long_wav, -1, 1)))
    out = tmp_path / "onnx.csv"
    done = without_torch("predict", *files, "--model", "pesq-wb-nisqa", "--engine", "onnx", "--device", "cpu",
                         "--out", out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    options = predict.Options(model="pesq-wb-nisqa", device="cpu", engine="torch")
    rows = predict.Predictor(options).score_group(files)
    want = {Path(r["filename"]).name: r["score"] for r in rows}
    got = scores(out)
    assert got.keys() == want.keys() and len(got) == 12
    worst = max(abs(got[k] - want[k]) for k in want)
    assert worst <= TOL, {k: got[k] - want[k] for k in want}


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory):
    """The shipped NISQA model's weights and config as a folder of its own, exported once by the CLI."""
    folder = tmp_path_factory.mktemp("export") / "pesq-wb-nisqa-copy"
    folder.mkdir()
    for name in ("config.yaml", "best.pt"):
        shutil.copyfile(PRETRAINED_DIR / "pesq-wb-nisqa" / name, folder / name)
    assert predict.resolve_engine("auto", str(folder), "cpu") == ("torch", "cpu")  # no graph yet
    res = run_cli("export", folder)
    assert res.exit_code == 0, res.output
    return folder


def test_export_writes_beside_best_pt_and_predict_finds_it(shipped_copy, tmp_path):
    assert (shipped_copy / "model.onnx").is_file()
    assert predict.resolve_engine("auto", str(shipped_copy), "cpu") == ("onnx", "cpu")
    assert predict.resolve_engine("torch", str(shipped_copy), "cpu") == ("torch", "cpu")
    files = [write(tmp_path / f"{k}.wav", SPEECH[: 8000 * (2 * k + 1)]) for k in range(4)]
    for engine in ("onnx", "torch"):
        res = run_cli("predict", *files, "--model", shipped_copy, "--engine", engine, "--out",
                      tmp_path / f"{engine}.csv")
        assert res.exit_code == 0, res.output
    got, want = scores(tmp_path / "onnx.csv"), scores(tmp_path / "torch.csv")
    assert max(abs(got[k] - want[k]) for k in want) <= TOL


def test_a_graph_older_than_best_pt_is_refused(shipped_copy, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(shipped_copy, stale)
    state = load_checkpoint(stale / "best.pt")
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(stale / "best.pt", state)  # trained further after the export
    wav = write(tmp_path / "a.wav", SPEECH[:16000])
    res = run_cli("predict", wav, "--model", stale, "--engine", "onnx", "--out", tmp_path / "s.csv")
    assert res.exit_code == 2 and "export it again" in res.output and not (tmp_path / "s.csv").exists()


def test_onnx_engine_without_a_graph_is_one_line(tmp_path):
    wav = write(tmp_path / "a.wav", SPEECH[:16000])
    res = without_torch("predict", wav, "--model", tmp_path, "--engine", "onnx", "--out", tmp_path / "s.csv")
    assert res.returncode == 2, res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [
        f"error: {tmp_path}: no model.onnx (make it with `mosqa export {tmp_path}`, or use --engine torch)"]


def test_a_model_torch_cannot_export_is_one_line(shipped_copy, tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("Could not guard on data-dependent expression\nand more")

    monkeypatch.setattr(torch.onnx, "export", fails)
    res = run_cli("export", shipped_copy, "--out", tmp_path / "m.onnx")
    assert res.exit_code == 2 and not (tmp_path / "m.onnx").exists()
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [
        f"error: {shipped_copy}: torch cannot export this nisqa model to ONNX (Could not guard on "
        "data-dependent expression)"]


def test_a_graph_that_scores_otherwise_than_torch_is_not_written(shipped_copy, tmp_path, monkeypatch):
    from mosqa import qa

    real = qa.QAScorer.forward
    monkeypatch.setattr(qa.QAScorer, "forward", lambda self, wav, lengths=None: real(self, wav, lengths)
                        + (0 if torch.compiler.is_exporting() else 1e-3))
    res = run_cli("export", shipped_copy, "--out", tmp_path / "m.onnx")
    assert res.exit_code == 2 and "scores differently from torch" in res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size, out", [((48, 15), (24, 7)), ((24, 7), (12, 5)), ((12, 5), (6, 3)),
                                       ((9, 9), (9, 9)), ((10, 4), (3, 4))])
def test_windowed_max_pool_is_adaptive_max_pool(size, out):
    x = torch.randn(3, 2, *size)
    pool = torch.nn.AdaptiveMaxPool2d(out)
    assert torch.equal(export.windowed_max_pool(pool)(x), pool(x))


def test_the_shipped_graph_is_the_shipped_weights():
    path = export.onnx_path("pesq-wb-nisqa")
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["checkpoint_sha256"] == export.sha256(path.parent / "best.pt")
    assert meta["sample_rate"] == "16000"
