"""Quality model architectures, heads and options: shapes, training, padding invariance, knobs."""

import pytest
import torch
import torch.nn.functional as F

from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd
from mosqa.heads import bin_centres, num_bins, sequence_mask
from mosqa.losses import build_loss
from mosqa.models import (
    COMMON,
    MODELS,
    OPTION_NAMES,
    MaskedBatchNorm,
    ModelOptions,
    QualityModel,
    attention_mask,
    build_model,
    pool_time,
)

BINS = 24
HEAD_VARIANTS = {
    "reg-norm": {"head": "reg", "norm_output": True},
    "reg-linear": {"head": "reg", "norm_output": False},
    "cls": {"head": "cls", "step": 0.5},
}
ATTENTION_ARCHS = [name for name, cls in MODELS.items() if "local_mask" in cls.uses]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: thread start-up and contention on a shared CI box cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(arch, seed=0, **opts):
    torch.manual_seed(seed)
    return build_model({"arch": arch, **opts}, BINS)


def batch(lengths, seed=1, bins=BINS):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), int(lengths.max()), bins, generator=g).abs()
    return x * sequence_mask(lengths, x.shape[1]).unsqueeze(-1), lengths


@pytest.mark.parametrize("variant", HEAD_VARIANTS)
@pytest.mark.parametrize("arch", MODELS)
def test_every_model_runs_a_padded_batch_and_learns(arch, variant):
    model = make(arch, **HEAD_VARIANTS[variant]).train()
    x, lengths = batch([40, 31, 22, 17])
    target = torch.tensor([1.3, 2.2, 3.8, 4.6])
    out = model(x, lengths)
    b, frames = out["frame"].shape
    assert b == 4 and out["score"].shape == (4,) and out["mask"].shape == (4, frames)
    assert torch.equal(out["mask"].sum(1), model.backbone.forward(x, lengths)[1])
    assert torch.isfinite(out["score"]).all() and torch.isfinite(out["frame"]).all()
    if variant == "cls":
        k = num_bins(0.5)
        assert out["logits"].shape == (4, k) and out["frame_logits"].shape == (4, frames, k)
        assert out["reg"].shape == out["cls"].shape == (4,)
        assert torch.allclose(out["score"], (out["reg"] + out["cls"]) / 2)
        assert torch.equal(model.bin_centres, bin_centres(k))
    else:
        assert "logits" not in out and model.bin_centres is None

    loss = build_loss("norm-mse+ce" if variant == "cls" else "mse+frame-mse")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def measure():  # the same dropout masks every time, so before and after compare one function
        torch.manual_seed(123)
        return loss(model(x, lengths), target)[0]

    before = measure()
    for _ in range(5):
        opt.zero_grad()
        measure().backward()
        opt.step()
    assert measure().item() < before.item()


def padding_case(arch, **opts):
    model = make(arch, **opts)
    model.train()
    model(*batch([30, 12]))  # BatchNorm running statistics become non-trivial
    model.eval()
    x, lengths = batch([33, 60], seed=5)
    x[0, 33:] = 7.0  # garbage in the padding must not matter either
    with torch.no_grad():
        alone = model(x[:1, :33], lengths[:1])
        padded = model(x, lengths)
    n = alone["frame"].shape[1]
    return alone, padded, n


@pytest.mark.parametrize("head", ["reg", "cls"])
@pytest.mark.parametrize("arch", MODELS)
def test_padding_does_not_change_a_sequence(arch, head):
    alone, padded, n = padding_case(arch, head=head)
    assert torch.allclose(alone["score"][0], padded["score"][0], atol=1e-5)
    assert torch.allclose(alone["frame"][0], padded["frame"][0, :n], atol=1e-5)
    assert padded["mask"][0].sum() == n
    if head == "cls":
        assert torch.allclose(alone["logits"][0], padded["logits"][0], atol=1e-5)


@pytest.mark.parametrize("arch", ATTENTION_ARCHS)
def test_padding_with_local_mask(arch):
    alone, padded, _ = padding_case(arch, local_mask=2)
    assert torch.allclose(alone["score"][0], padded["score"][0], atol=1e-5)


def test_hasa_variants_keep_padding_invariance():
    alone, padded, n = padding_case("hasa", time_pool=4, prepare_layers=1, prepare_bn=True, head_hidden=32)
    assert n == 9  # ceil(33 / 4) pooled frames
    assert torch.allclose(alone["score"][0], padded["score"][0], atol=1e-5)
    assert torch.allclose(alone["frame"][0], padded["frame"][0, :n], atol=1e-5)


def test_pool_time_averages_valid_frames_only():
    h = torch.arange(10.0).view(1, 10, 1).repeat(2, 1, 1)
    pooled, lengths = pool_time(h, torch.tensor([10, 6]), 4)
    assert lengths.tolist() == [3, 2]
    assert pooled[0, :, 0].tolist() == [1.5, 5.5, 8.5]
    assert pooled[1, :2, 0].tolist() == [1.5, 4.5]  # frames 4 and 5 only


def test_masked_batchnorm_uses_valid_frames_only():
    torch.manual_seed(0)
    masked, plain = MaskedBatchNorm(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(2, 3, 10, 4)  # (B, C, T, F)
    mask = sequence_mask(torch.tensor([10, 6]), 10)
    x[1, :, 6:] = 100.0
    y = masked(x, mask)
    valid = x.movedim(2, 1)[mask]  # (N, C, F)
    expect = plain(valid)
    assert torch.allclose(y.movedim(2, 1)[mask], expect, atol=1e-5)
    assert torch.allclose(masked.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(masked.running_var, plain.running_var, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 10, 5), (3, 4, 10)])
def test_masked_batchnorm_gradient_matches_batchnorm_on_valid_frames(shape):
    """The hand-written backward against autograd through a plain BatchNorm of the valid frames."""
    torch.manual_seed(0)
    masked, plain = MaskedBatchNorm(4), torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2.0)
        plain.bias.normal_()
    masked.load_state_dict(plain.state_dict())
    mask = sequence_mask(torch.tensor([10, 6, 3]), 10)
    x = (3 * torch.randn(*shape) + 1).requires_grad_()
    g = torch.randn(*shape)
    y = masked(x, mask)
    (y * g).sum().backward()
    valid = x.detach().movedim(2, 1)[mask].requires_grad_()  # (N, C, ...)
    (plain(valid) * g.movedim(2, 1)[mask]).sum().backward()
    assert torch.allclose(y.movedim(2, 1)[mask], plain(valid), atol=1e-5)
    assert torch.all(y.movedim(2, 1)[~mask] == 0) and torch.all(x.grad.movedim(2, 1)[~mask] == 0)
    assert torch.allclose(x.grad.movedim(2, 1)[mask], valid.grad, atol=1e-5)
    assert torch.allclose(masked.weight.grad, plain.weight.grad, atol=1e-4)
    assert torch.allclose(masked.bias.grad, plain.bias.grad, atol=1e-4)


def test_attention_mask_is_local_and_ignores_padding():
    allow = attention_mask(sequence_mask(torch.tensor([5]), 7), window=1)[0, 0]
    assert allow[2].tolist() == [False, True, True, True, False, False, False]
    assert allow[4].tolist() == [False, False, False, True, True, False, False]  # key 5 is padding
    assert allow[6].tolist() == [False] * 6 + [True]  # a padded query keeps only itself: no NaN


@pytest.mark.parametrize("arch", ATTENTION_ARCHS)
def test_local_mask_changes_attention_for_long_sequences(arch):
    full = make(arch).eval()
    local = make(arch, local_mask=2).eval()
    local.load_state_dict(full.state_dict())
    wide = make(arch, local_mask=10_000).eval()
    wide.load_state_dict(full.state_dict())
    x, lengths = batch([90])
    with torch.no_grad():
        a, b, c = full(x, lengths), local(x, lengths), wide(x, lengths)
    assert not torch.allclose(a["frame"], b["frame"], atol=1e-4)
    assert torch.allclose(a["frame"], c["frame"], atol=1e-5)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "arch,option,values",
    [
        ("crn", "C", (128, 256)),
        ("crn", "lstm_hidden", (64, 128)),
        ("crn", "trans", (128, 256)),
        ("cnnA", "prepare_layers", (3, 4)),
        ("cnnA", "prepare_kernel", (4, 5)),
        ("cnnA", "prepare_bn", (False, True)),
        ("cnnA", "conv_layers", (2, 3)),
        ("cnnA", "conv_kernel", (2, 3)),
        ("can2d", "C", (32, 64)),
        ("lstmcan", "lstm_hidden", (32, 64)),
        ("hasa", "lstm_hidden", (64, 100)),
        ("qualitynet", "lstm_hidden", (64, 100)),
        ("hasa", "prepare_layers", (0, 1)),
        ("hasa", "layer_norm", (False, True)),
        ("nisqa", "layer_norm", (False, True)),
        ("cnnA", "head_hidden", (0, 64)),
        ("mosnet", "lstm_hidden", (64, 128)),
    ],
)
def test_size_options_change_the_model(arch, option, values):
    a, b = (make(arch, **{option: v}) for v in values)
    assert n_params(a) < n_params(b)


@pytest.mark.parametrize("option,value", [("prepare_dilation", 2), ("attn_dropout", 0.5), ("dropout", 0.5)])
def test_shape_free_options_change_cnnA(option, value):
    base, other = make("cnnA").train(), make("cnnA", **{option: value}).train()
    other.load_state_dict(base.state_dict())
    x, lengths = batch([40, 30])
    torch.manual_seed(9)
    a = base(x, lengths)["frame"]
    torch.manual_seed(9)
    b = other(x, lengths)["frame"]
    assert not torch.allclose(a, b, atol=1e-5)


def test_step_sets_number_of_bins():
    assert num_bins(0.2) == 20 and num_bins(0.5) == 8
    x, lengths = batch([20])
    for step, k in ((0.2, 20), (0.5, 8)):
        model = make("hasa", head="cls", step=step)
        assert model(x, lengths)["logits"].shape == (1, k)
        assert torch.allclose(model.bin_centres, 1 + (torch.arange(k) + 0.5) * step)
    with pytest.raises(MosqaError):
        make("hasa", head="cls", step=0.3)


def test_output_activation_options():
    """Same weights: frame = 1 + 4σ(r), 1 + 4·hardsigmoid(r), or r itself for the linear output."""
    sig = make("qualitynet").eval()
    hard = make("qualitynet", hardsigmoid=True).eval()
    lin = make("qualitynet", norm_output=False).eval()
    hard.load_state_dict(sig.state_dict())
    lin.load_state_dict(sig.state_dict())
    x, lengths = batch([30])
    with torch.no_grad():
        raw = lin(x * 50, lengths)["frame"]
        assert torch.allclose(sig(x * 50, lengths)["frame"], 1 + 4 * torch.sigmoid(raw), atol=1e-5)
        assert torch.allclose(hard(x * 50, lengths)["frame"], 1 + 4 * F.hardsigmoid(raw), atol=1e-5)
    assert not torch.allclose(torch.sigmoid(raw), F.hardsigmoid(raw), atol=1e-3)
    assert make("qualitynet", norm_output=False).head.frame.bias.item() == 3.0  # starts mid-scale


def test_hardsigmoid_is_the_same_in_training_and_inference():
    model = make("qualitynet", hardsigmoid=True, dropout=0.0)
    x, lengths = batch([30, 20])
    train = model.train()(x, lengths)["score"]
    infer = model.eval()(x, lengths)["score"]
    assert torch.equal(train, infer)


def test_normalised_scores_stay_on_the_mos_scale():
    model = make("cnn").eval()
    x, lengths = batch([25, 12])
    out = model(x * 1e3, lengths)
    assert ((out["frame"] >= 1) & (out["frame"] <= 5)).all()
    assert ((out["score"] >= 1) & (out["score"] <= 5)).all()


def test_pooling_and_predict_options():
    x, lengths = batch([30, 25])
    mean, attn = make("cnnA").eval(), make("cnnA", pooling="attn").eval()
    with torch.no_grad():
        out = mean(x, lengths)
        assert torch.allclose(out["score"][1], out["frame"][1, :25].mean(), atol=1e-5)
        weights = attn(x, lengths)["weights"]
    assert torch.allclose(out["weights"][1, :25], torch.full((25,), 1 / 25))
    assert torch.allclose(weights.sum(1), torch.ones(2)) and weights[1, 25:].abs().max() == 0
    assert not torch.allclose(weights[1, :25], out["weights"][1, :25], atol=1e-4)
    assert make("nisqa").options.pooling == "attn"
    cls = make("hasa", head="cls", predict="cls").eval()
    with torch.no_grad():
        out = cls(x, lengths)
    assert torch.equal(out["score"], out["cls"])
    assert torch.allclose(out["cls"], torch.softmax(out["logits"], -1) @ cls.bin_centres)


def test_build_model_refuses_bad_configs():
    with pytest.raises(MosqaError, match="qualitynet.*nisqa"):
        build_model({"arch": "transformer"}, BINS)
    with pytest.raises(MosqaError, match="'C'.*hasa"):
        build_model({"arch": "hasa", "C": 64}, BINS, explicit={"C"})
    with pytest.raises(MosqaError, match="local_mask"):
        build_model({"arch": "crn", "local_mask": 4}, BINS, explicit={"local_mask"})
    with pytest.raises(MosqaError, match="step.*cls"):
        build_model({"arch": "crn", "step": 0.5}, BINS, explicit={"step"})
    with pytest.raises(MosqaError, match="hardsigmoid"):
        build_model({"arch": "crn", "hardsigmoid": True, "norm_output": False}, BINS)
    with pytest.raises(MosqaError, match="head"):
        build_model({"arch": "crn", "head": "ordinal"}, BINS)
    with pytest.raises(MosqaError, match="attn_heads"):
        build_model({"arch": "hasa", "attn_heads": 3}, BINS)
    # Options set by defaults (not by the user) and unrelated keys are fine.
    build_model({"arch": "hasa", "C": 64, "epochs": 3}, BINS, explicit={"epochs"})
    build_model({"arch": "crn", "head": "cls", "step": 0.5}, BINS, explicit={"head", "step"})
    build_model({"arch": "crn", "local_mask": 0}, BINS, explicit={"local_mask"})  # the neutral value


def test_config_rebuilds_the_same_model():
    model = make("crn", C=64, head="cls")
    config = model.config()
    again = build_model(config, BINS, explicit={k for k, v in config.items() if v is not None})
    again.load_state_dict(model.state_dict())
    assert again.config() == model.config() and again.options.C == 64


@pytest.mark.parametrize("arch", MODELS)
def test_registry_declarations(arch):
    cls = MODELS[arch]
    assert set(cls.uses) <= set(OPTION_NAMES) and not set(cls.uses) & set(COMMON)
    assert set(cls.defaults) <= set(OPTION_NAMES)
    fe = FrontEnd.from_dict(cls.frontend)
    assert cls.frontend.keys() <= fe.to_dict().keys()
    QualityModel(arch, fe.n_bins if arch == "nisqa" else BINS, ModelOptions())
