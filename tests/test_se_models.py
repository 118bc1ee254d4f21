"""Enhancement models: length, padding, identity masks, causality, DPCRN size."""

import pytest
import torch

from mosqa.errors import MosqaError
from mosqa.se_models import SE_MODELS, build_se_model, count_parameters

torch.set_num_threads(1)

CONFIGS = {
    "lstm": {"arch": "lstm", "hidden": 32, "conv_channels": 64, "layers": 1},
    "lstm_sigmoid": {"arch": "lstm", "hidden": 32, "conv_channels": 64, "layers": 1, "mask_act": "sigmoid"},
    "dpcrn_paper": {"arch": "dpcrn", "n_fft": 400, "hop": 200, "window": "sine"},
    "dpcrn_log": {"arch": "dpcrn", "n_fft": 512, "hop": 256, "window": "hann"},
}


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tone = sum(torch.sin(2 * torch.pi * 150 * k * t) / k for k in range(1, 8))
    return (0.1 * tone * (1 + torch.sin(2 * torch.pi * 4 * t)) + 0.01 * torch.randn(n, generator=g)).float()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_keeps_length_and_ignores_padding(name):
    torch.manual_seed(0)
    model = build_se_model(CONFIGS[name]).eval()
    n, short = 9000, 5003
    batch = torch.stack([_speechlike(n, 1), torch.cat([_speechlike(short, 2), torch.zeros(n - short)])])
    lengths = torch.tensor([n, short])
    with torch.no_grad():
        out = model(batch, lengths)
        solo = model(batch[1:, :short])
    assert out.shape == batch.shape and solo.shape == (1, short)
    assert torch.all(out[1, short:] == 0)
    # Only the last STFT frames differ from a solo run (zeros vs reflect padding past the end); a BLSTM
    # carries that difference backwards, decaying, so compare up to a few windows before the end.
    edge = short - 3 * model.fe.n_fft
    assert torch.allclose(out[1, :edge], solo[0, :edge], atol=1e-3)
    # Garbage in the padded region must not leak into the valid part either.
    noisy_pad = batch.clone()
    noisy_pad[1, short:] = 0.5
    with torch.no_grad():
        assert torch.allclose(model(noisy_pad, lengths), out, atol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_identity_init_returns_clean_input(name):
    model = build_se_model(CONFIGS[name] | {"identity_init": True}).eval()
    clean = _speechlike(12000)[None]
    with torch.no_grad():
        out = model.run(clean)
    tol = 1e-4 if "sigmoid" in name else 1e-5  # sigmoid can only approach 1
    assert torch.allclose(out["wav"], clean, atol=tol)
    mask = out["mask"]
    assert torch.allclose(mask.real if mask.is_complex() else mask, torch.ones(()), atol=tol * 10)
    if mask.is_complex():
        assert mask.imag.abs().max() < 1e-6


def test_random_init_is_not_identity():
    model = build_se_model(CONFIGS["dpcrn_paper"]).eval()
    clean = _speechlike(8000)[None]
    with torch.no_grad():
        assert not torch.allclose(model(clean), clean, atol=1e-3)


@pytest.mark.parametrize("name", ["dpcrn_paper", "dpcrn_log"])
def test_dpcrn_is_causal(name):
    torch.manual_seed(0)
    model = build_se_model(CONFIGS[name]).eval()
    x = _speechlike(8000)[None]
    y = x.clone()
    cut = 5000
    y[0, cut:] = torch.randn(8000 - cut)
    with torch.no_grad():
        a, b = model(x), model(y)
    # Samples before the first frame that reads the changed part (one window back) stay identical.
    safe = cut - model.fe.n_fft
    assert torch.allclose(a[0, :safe], b[0, :safe], atol=1e-6)
    assert not torch.allclose(a[0, cut:], b[0, cut:], atol=1e-3)


def test_dpcrn_size_matches_paper():
    for cfg in (CONFIGS["dpcrn_paper"], CONFIGS["dpcrn_log"]):
        n = count_parameters(build_se_model(cfg))
        print(f"dpcrn {cfg['n_fft']}/{cfg['hop']}: {n:,} parameters")
        assert 0.7e6 <= n <= 0.9e6


def test_gradients_reach_every_parameter():
    for name in ("lstm", "dpcrn_paper"):
        model = build_se_model(CONFIGS[name])
        out = model(torch.randn(2, 4000) * 0.1, torch.tensor([4000, 3000]))
        out.pow(2).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


def test_registry_and_bad_options():
    assert set(SE_MODELS) == {"lstm", "dpcrn"}
    with pytest.raises(MosqaError, match="unknown enhancement model"):
        build_se_model({"arch": "transformer"})
    with pytest.raises(MosqaError, match="mask-act"):
        build_se_model({"arch": "lstm", "mask_act": "relu"})
