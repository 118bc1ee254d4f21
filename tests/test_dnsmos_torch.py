"""DNSMOS in torch (mosqa.dnsmos_torch): the same numbers as the ONNX graphs and the reference's golden
numbers (tests/fixtures/dnsmos, see test_dnsmos.py), gradients that are right, and the engine choice."""

import csv

import numpy as np
import pytest
import torch

from mosqa import dnsmos
from mosqa import dnsmos_torch as dt
from mosqa.audio import load_audio
from mosqa.errors import MosqaError
from tests.test_dnsmos import FIXTURES, GOLDEN, MEL, MODES, SHORT_FIXTURES, TOL, assert_matches


@pytest.fixture(scope="module")
def torch_scorers():
    return {mode: dnsmos.Scorer(personalized=p, engine="torch") for mode, p in MODES.items()}


@pytest.fixture(scope="module")
def differentiable():
    return dnsmos.load_torch()


def fixture_audio(name: str) -> np.ndarray:
    return load_audio(FIXTURES / name)


# ---------------------------------------------------------------- equal to the graphs
def test_log_mel_equals_numpy_features():
    got = dt.log_mel(torch.from_numpy(MEL["signal"])[None])[0].numpy()
    np.testing.assert_allclose(got, dnsmos.log_mel(MEL["signal"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, MEL["features"], rtol=0, atol=1e-5)  # librosa's, called as the reference
    segment = fixture_audio("speech_noise_10s.flac")[: dnsmos.SEGMENT]
    feats = dt.log_mel(torch.from_numpy(segment[: -dnsmos.P808_TRIM])[None])[0].numpy()
    assert feats.shape == (900, 120) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, dnsmos.p808_features(segment), rtol=0, atol=1e-5)


@pytest.mark.parametrize("conv", ["direct", "winograd"])
@pytest.mark.parametrize("personalized", [False, True])
def test_networks_equal_the_onnx_graphs(conv, personalized):
    if conv == "winograd" and not dt.winograd_available():
        pytest.skip("NNPACK does not run on this machine")
    names = ("speech_noise_10s.flac", "silence_10s.flac")
    segments = np.stack([fixture_audio(n)[: dnsmos.SEGMENT] for n in names])
    onnx = dnsmos.OnnxNetworks(personalized=personalized, threads=1)
    p835 = dt.P835Net(dnsmos.model_path(dnsmos.P835_MODELS[personalized]), conv)
    p808 = dt.P808Net(dnsmos.model_path(dnsmos.P808_MODEL), conv)
    with torch.inference_mode():
        x = torch.from_numpy(segments)
        raw = p835(x).numpy()
        p808_mos = p808(dt.log_mel(x[:, : -dnsmos.P808_TRIM])).numpy()
    np.testing.assert_allclose(raw, onnx.p835(segments), rtol=0, atol=1e-5)
    np.testing.assert_allclose(p808_mos, onnx.p808(segments), rtol=0, atol=1e-5)


def test_winograd_only_on_the_wide_layers_and_direct_when_nnpack_is_missing(monkeypatch):
    body = dt.P835Net(dnsmos.model_path(dnsmos.P835_MODELS[False]), "winograd").body
    assert body.algorithms == ["direct", "winograd", "winograd", "direct", "direct", "direct", "direct"]
    monkeypatch.setattr(dt, "winograd_available", lambda: False)
    networks = dt.TorchNetworks(p808=False)
    assert set(networks.p835_net.body.algorithms) == {"direct"}
    segment = fixture_audio("speech_noise_10s.flac")[None, : dnsmos.SEGMENT]
    expected = dnsmos.OnnxNetworks(p808=False).p835(segment)
    np.testing.assert_allclose(networks.p835(segment), expected, rtol=0, atol=1e-5)


def test_graph_files_that_are_missing_or_not_dnsmos_are_user_errors(tmp_path):
    with pytest.raises(MosqaError, match="no such ONNX model"):
        dt.P835Net(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(MosqaError, match="junk.onnx"):
        dt.P808Net(junk)
    with pytest.raises(MosqaError, match="not a DNSMOS P.835 graph"):
        dt.P835Net(dnsmos.model_path(dnsmos.P808_MODEL))
    import onnx
    from onnx import helper, numpy_helper

    kernel = numpy_helper.from_array(np.zeros((4, 1, 5, 5), np.float32), "k")
    conv = helper.make_node("Conv", ["x", "k"], ["y"], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [kernel])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(other))
    with pytest.raises(MosqaError, match="kernel_shape"):
        dt.P808Net(other)


# ---------------------------------------------------------------- golden numbers, torch engine
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SHORT_FIXTURES)
def test_torch_engine_matches_reference(torch_scorers, mode, name):
    assert_matches(torch_scorers[mode].score(fixture_audio(name)), GOLDEN[mode][name])


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_torch_engine_matches_reference_on_60s_clip_with_skipped_hops(torch_scorers, mode):
    got = torch_scorers[mode].score(fixture_audio("speech_60s.flac"))
    assert_matches(got, GOLDEN[mode]["speech_60s.flac"])


def test_torch_engine_all_hops_equals_onnx_engine():
    """The skipped-hop rule itself is shared and tested in test_dnsmos.py; here, the hop it adds."""
    clip = fixture_audio("speech_60s.flac")[: 17 * dnsmos.FS]  # 8 hops; the reference skips hop 7
    every = dnsmos.Scorer(all_hops=True, engine="torch").score(clip)
    assert every["num_hops"] == 8
    assert_matches(every, dnsmos.Scorer(all_hops=True, engine="onnx").score(clip))


@pytest.mark.slow
def test_cli_torch_engine_writes_the_reference_numbers(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    names = ["speech_3s.flac", "white_noise_10s.flac"]
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["dnsmos", *[str(FIXTURES / n) for n in names], "--out", str(out),
                                      "--engine", "torch", "--personalized", "--jobs", "2"])  # pool workers
    assert result.exit_code == 0, result.output
    for row, name in zip(csv.DictReader(out.open()), names, strict=True):
        expected = GOLDEN["personalized"][name]
        assert_matches({k: float(row[k]) for k in expected}, expected)
        assert row["warning"] == row["error"] == ""


# ---------------------------------------------------------------- engine and device choice
@pytest.mark.parametrize("gpu", [False, True])
def test_cuda_is_chosen_only_when_torch_sees_a_gpu(monkeypatch, gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(dnsmos, "torch_build_has_cuda", lambda: True)
    assert dt.resolve_device("auto") == ("cuda" if gpu else "cpu")
    assert dnsmos.pick_engine("auto", "auto") == ("torch" if gpu else "onnx")
    assert dnsmos.pick_engine("auto", "cpu") == "onnx"  # torch is no faster on CPU
    assert dt.resolve_device("cpu") == "cpu"
    if not gpu:
        with pytest.raises(MosqaError, match="no CUDA GPU"):
            dt.resolve_device("cuda")


def test_engine_names_are_checked(monkeypatch):
    assert dnsmos.pick_engine("torch", "cpu") == "torch" and dnsmos.pick_engine("onnx", "cuda") == "onnx"
    with pytest.raises(MosqaError, match="--engine tensorflow"):
        dnsmos.pick_engine("tensorflow", "cpu")
    monkeypatch.setattr(dnsmos, "torch_build_has_cuda", lambda: False)
    assert dnsmos.pick_engine("auto", "auto") == "onnx"  # a +cpu torch build: no import to find that out
    with pytest.raises(MosqaError, match="--device tpu"):
        dt.resolve_device("tpu")


# ---------------------------------------------------------------- differentiable API
def test_load_torch_equals_the_reference_on_one_segment_and_all_hops_beyond(differentiable):
    audio = fixture_audio("speech_noise_10s.flac")  # 10 s: exactly one segment, as the reference
    with torch.no_grad():
        got = differentiable(torch.from_numpy(audio)[None])
    expected = GOLDEN["normal"]["speech_noise_10s.flac"]
    for key, name in (("SIG", "SIG"), ("BAK", "BAK"), ("OVRL", "OVRL"), ("P808", "P808_MOS")):
        assert got[key].item() == pytest.approx(expected[name], abs=TOL)
    longer = fixture_audio("speech_60s.flac")[: 11 * dnsmos.FS]  # 2 hops
    with torch.no_grad():
        batch = differentiable(torch.from_numpy(np.stack([longer, longer[::-1].copy()])))
    scorer = dnsmos.Scorer(all_hops=True, engine="torch")
    for i, clip in enumerate([longer, longer[::-1].copy()]):
        row = scorer.score(clip)
        for key, name in (("SIG", "SIG"), ("OVRL", "OVRL"), ("P808", "P808_MOS")):
            assert batch[key][i].item() == pytest.approx(row[name], abs=TOL)


def test_short_inputs_are_one_segment_and_under_one_second_is_refused(differentiable):
    clip = torch.from_numpy(fixture_audio("speech_3s.flac"))[None]
    with torch.no_grad():
        scores = differentiable(clip)
    assert set(scores) == {"SIG", "BAK", "OVRL", "P808"} and all(v.shape == (1,) for v in scores.values())
    reference = GOLDEN["normal"]["speech_3s.flac"]  # the reference repeats the 3 s to 12 s: close, not equal
    assert abs(scores["OVRL"].item() - reference["OVRL"]) < 0.5
    with pytest.raises(MosqaError, match="at least 1 s"):
        differentiable(torch.zeros(1, dnsmos.FS - 1))
    with pytest.raises(MosqaError, match="batch, samples"):
        differentiable(torch.zeros(dnsmos.FS * 2))


def test_gradient_equals_finite_differences():
    model = dnsmos.load_torch().double()
    wav = torch.from_numpy(fixture_audio("speech_noise_10s.flac")[: dnsmos.FS]).double()[None]

    def total(x):
        scores = model(x)
        return sum(s.sum() for s in scores.values())

    wav.requires_grad_(True)
    (grad,) = torch.autograd.grad(total(wav), wav)
    # single samples: a random direction over all samples crosses ReLU kinks and breaks the difference
    picks = torch.topk(grad.abs()[0], 2).indices.tolist() + [5000]
    step = 1e-6
    with torch.no_grad():
        for i in picks:
            bump = torch.zeros_like(wav)
            bump[0, i] = step
            numeric = (total(wav + bump) - total(wav - bump)) / (2 * step)
            assert numeric.item() == pytest.approx(grad[0, i].item(), rel=1e-4, abs=1e-6), i


def test_gradient_steps_raise_the_ovrl_of_a_noisy_clip(differentiable):
    wav = torch.from_numpy(fixture_audio("speech_noise_10s.flac")[dnsmos.FS : 2 * dnsmos.FS])[None]
    wav = wav.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([wav], lr=1e-3)
    history = []
    for _ in range(3):
        ovrl = differentiable(wav)["OVRL"].sum()
        history.append(ovrl.item())
        optimizer.zero_grad()
        (-ovrl).backward()
        optimizer.step()
    assert all(b > a for a, b in zip(history, history[1:], strict=False)), history
    assert history[-1] - history[0] > 0.2, history
