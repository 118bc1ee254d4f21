"""mosqa export and `mosqa predict --engine onnx`: the graph scores as torch does, on any length from
0.5 s to 10 min, in a process where torch cannot be imported; stale graphs are refused."""

import csv
import os
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
from mosqa.diagnostics import TARGETS
from mosqa.pretrained import PRETRAINED_DIR
from mosqa.runs import load_checkpoint, save_checkpoint

ROOT = Path(__file__).parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "dnsmos"
SPEECH = load_audio(FIXTURES / "speech_10s.flac")
TARGET_NAMES = list(TARGETS)
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


def rows_by_name(path) -> dict:
    with open(path, newline="") as f:
        return {Path(r["filename"]).name: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def lengths_to_ten_minutes(tmp_path_factory):
    """The DNSMOS fixtures (silence, noise, speech of 3 to 60 s), speech of 0.5 to 25 s, and ten minutes
    whose noise grows, so that its chunks differ and their weighted mean is tested."""
    folder = tmp_path_factory.mktemp("lengths")
    rng = np.random.default_rng(0)
    files = sorted(FIXTURES.glob("*.flac"))
    for seconds in (0.5, 1.0, 8.0, 8.01, 25.0):
        n = int(seconds * 16000)
        files.append(write(folder / f"speech_{seconds}s.wav", np.resize(SPEECH, n)))
    n = 600 * 16000
    ramp = np.linspace(0.0, 0.2, n, dtype=np.float32)
    long_wav = np.resize(SPEECH, n) + ramp * rng.standard_normal(n).astype(np.float32)
    files.append(write(folder / "ten_minutes.wav", np.clip(long_wav, -1, 1)))
    return files


@pytest.mark.slow
def test_onnx_engine_without_torch_scores_as_torch_from_half_a_second_to_ten_minutes(tmp_path,
                                                                                     lengths_to_ten_minutes):
    files = lengths_to_ten_minutes
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
    assert "listener_mos" not in out.read_text().splitlines()[0]  # a model without it: no column


@pytest.mark.slow
def test_the_default_model_without_torch_scores_as_torch_from_half_a_second_to_ten_minutes(
        tmp_path, lengths_to_ten_minutes):
    """pesq-wb (the Distill-MOS encoder and its heads), --engine auto where torch cannot be imported,
    against the torch engine at its default precision, float32: the score, listener_mos and, with
    --diagnose, the six diagnostics, each to 1e-4 of a MOS (a diagnostic: the same share of its range)."""
    files = lengths_to_ten_minutes
    out = tmp_path / "onnx.csv"
    done = without_torch("predict", *files, "--diagnose", "--device", "cpu", "--out", out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = predict.Predictor(predict.Options(device="cpu", engine="torch", diagnose=True)).score_group(files)
    got = rows_by_name(out)
    assert got.keys() == {Path(r["filename"]).name for r in rows} and len(got) == 12
    scales = {"score": 1.0, "listener_mos": 1.0} | {k: (t.high - t.low) / 4 for k, t in TARGETS.items()}
    worst = {k: max(abs(float(got[Path(r["filename"]).name][k]) - r[k]) / scale for r in rows)
             for k, scale in scales.items()}
    assert max(worst.values()) <= TOL, worst
    # without --diagnose: the score and the listener column, the same numbers
    plain = tmp_path / "plain.csv"
    fixtures = sorted(FIXTURES.glob("*.flac"))
    done = without_torch("predict", *fixtures, "--device", "cpu", "--out", plain)
    assert done.returncode == 0, done.stderr[-2000:]
    header = plain.read_text().splitlines()[0].split(",")
    assert header == [*predict.COLUMNS, "listener_mos", "warning", "error"]
    for name, row in rows_by_name(plain).items():
        assert row["score"] == got[name]["score"] and row["listener_mos"] == got[name]["listener_mos"]


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
    def fails(*args, **kwargs):  # the exporter colours parts of its messages
        raise RuntimeError("Could not guard on \x1b[96mdata-dependent\x1b[0m expression\nand more")

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


@pytest.mark.parametrize("name", ["pesq-wb", "pesq-wb-nisqa"])
def test_the_shipped_graph_is_the_shipped_weights(name):
    path = export.onnx_path(name)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["checkpoint_sha256"] == export.sha256(path.parent / "best.pt")
    assert meta["sample_rate"] == "16000"


def test_auto_runs_the_default_model_in_onnx_on_cpu_and_bf16_in_torch(tmp_path):
    assert predict.resolve_engine("auto", "pesq-wb", "cpu") == ("onnx", "cpu")
    assert predict.resolve_engine("auto", "pesq-wb", "cpu", "bf16") == ("torch", "cpu")
    wav = write(tmp_path / "a.wav", SPEECH[:16000])
    for args, message in ((("--engine", "onnx", "--precision", "bf16"), "the onnx engine runs float32"),
                          (("--precision", "fp16"), "--precision fp16: expected fp32 or bf16")):
        res = run_cli("predict", wav, *args, "--out", tmp_path / "s.csv")
        assert res.exit_code == 2 and message in res.output and not (tmp_path / "s.csv").exists()


def test_bf16_runs_the_torch_engine_in_bfloat16(tmp_path):
    files = [write(tmp_path / "a.wav", SPEECH[:8000])]  # bfloat16 is slow on a CPU without it: 0.5 s
    rows = {p: predict.Predictor(predict.Options(engine="torch", precision=p)).score_group(files)
            for p in ("fp32", "bf16")}
    for column in ("score", "listener_mos"):
        assert 0 < abs(rows["bf16"][0][column] - rows["fp32"][0][column]) < 0.1


@pytest.mark.slow
def test_export_of_the_default_model_is_the_shipped_graph(tmp_path):
    """`mosqa export pesq-wb` works, and the shipped graph is what it writes today: a change to the
    scorer (its layers, features, head) that leaves best.pt alone cannot leave a stale graph behind."""
    import onnx
    from onnx import numpy_helper

    res = run_cli("export", "pesq-wb", "--out", tmp_path / "pesq-wb.onnx")
    assert res.exit_code == 0, res.output
    new, shipped = onnx.load(str(tmp_path / "pesq-wb.onnx")), onnx.load(str(export.onnx_path("pesq-wb")))
    assert [o.name for o in new.graph.output] == ["score", *TARGET_NAMES, "listener_mos"]
    assert [(n.op_type, list(n.input)) for n in new.graph.node] == \
        [(n.op_type, list(n.input)) for n in shipped.graph.node]
    weights = {i.name: numpy_helper.to_array(i) for i in shipped.graph.initializer}
    assert all(np.array_equal(numpy_helper.to_array(i), weights[i.name]) for i in new.graph.initializer)
    assert os.path.getsize(export.onnx_path("pesq-wb")) < 11e6  # the encoder in float16


def test_halving_keeps_exact_weights_only():
    """halve_exact stores as float16 the weights float16 holds exactly, and the graph computes the same."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    exact = rng.standard_normal((64, 32)).astype(np.float16).astype(np.float32)  # as the encoder ships
    inexact = rng.standard_normal((32, 32)).astype(np.float32)  # as a fitted head
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "exact"], ["h"]),
         helper.make_node("MatMul", ["h", "inexact"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32])],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = rng.standard_normal((3, 64)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    export.halve_exact(model)
    onnx.checker.check_model(model)
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {"exact__float16": TensorProto.FLOAT16, "inexact": TensorProto.FLOAT}
    assert np.array_equal(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], before)


@pytest.mark.parametrize("seconds", [0.25, 3.0, 7.68])
def test_the_graphs_spectrum_is_the_encoders(seconds):
    """The DFT-product spectrum mosqa.export swaps in is CompressedSpectrum's, on a tone with digital
    silence inside, where |X|^0.3 magnifies every rounding difference."""
    from mosqa.distill_mos import CompressedSpectrum

    n = int(seconds * 16000)
    wav = torch.from_numpy(np.resize(SPEECH, n))[None].clone()
    wav[0, n // 3: n // 2] = 0
    wav = torch.cat([wav, torch.sin(torch.arange(n) * 0.1)[None] * 0.3])
    want = CompressedSpectrum()(wav)
    got = export.dft_spectrum(None)(wav)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5, rtol=0)
