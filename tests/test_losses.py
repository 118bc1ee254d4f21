"""Quality losses: values, masking, gradients, and the defects of the original code kept out."""

import pytest
import torch
import torch.nn.functional as F

from mosqa.errors import MosqaError
from mosqa.heads import sequence_mask
from mosqa.losses import LOSSES, NEEDS_CLS, LossOptions, build_loss, target_bins, target_distribution
from mosqa.models import build_model

K = 20


def fake_out(seed=0, cls=True):
    """A classifier model's output dict as leaf tensors, so gradients can be inspected directly."""
    g = torch.Generator().manual_seed(seed)
    mask = sequence_mask(torch.tensor([6, 4, 2]), 6)
    out = {
        "frame": 1 + 4 * torch.rand(3, 6, generator=g),
        "score": 1 + 4 * torch.rand(3, generator=g),
        "mask": mask,
    }
    if cls:
        out.update(
            reg=1 + 4 * torch.rand(3, generator=g),
            logits=torch.randn(3, K, generator=g),
            frame_logits=torch.randn(3, 6, K, generator=g),
        )
    for key, value in out.items():
        if key != "mask":
            value.requires_grad_(True)
    return out


TARGET = torch.tensor([1.4, 3.1, 4.9])
# The tensor each loss must send gradient to.
GRADIENT_TO = {
    "mse": "reg",
    "norm-mse": "reg",
    "frame-mse": "frame",
    "frame-mse-norm": "frame",
    "ce": "logits",
    "edm": "logits",
    "frame-edm": "frame_logits",
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("root", [False, True])
def test_every_loss_gives_gradient_to_the_prediction(name, root):
    out = fake_out()
    value = LOSSES[name](out, TARGET, LossOptions(edm_root=root))
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    grad = out[GRADIENT_TO[name]].grad
    assert grad is not None and grad.abs().sum() > 0


def test_frame_mse_reaches_frame_scores_and_ignores_padding():
    out = fake_out()
    loss = LOSSES["frame-mse"](out, TARGET, LossOptions())
    loss.backward()
    grad = out["frame"].grad
    assert (grad[out["mask"]] != 0).all()  # not detached: every valid frame is pulled
    assert (grad[~out["mask"]] == 0).all()
    changed = fake_out()
    with torch.no_grad():
        changed["frame"][~changed["mask"]] = 100.0
    assert torch.allclose(LOSSES["frame-mse"](changed, TARGET, LossOptions()), loss)


def test_frame_mse_matches_quality_net_weighting():
    out = fake_out()
    opts = LossOptions(y_max=4.5)
    expect = 0.0
    for i, n in enumerate([6, 4, 2]):
        err = ((out["frame"][i, :n] - TARGET[i]) ** 2).mean()
        expect += 10 ** (TARGET[i] - 4.5) * err / 3
    assert torch.allclose(LOSSES["frame-mse"](out, TARGET, opts), expect)


def test_normalised_losses_normalise_once():
    out = fake_out()
    opts = LossOptions()
    assert torch.allclose(LOSSES["norm-mse"](out, TARGET, opts), LOSSES["mse"](out, TARGET, opts) / 16)
    assert torch.allclose(
        LOSSES["frame-mse-norm"](out, TARGET, opts), LOSSES["frame-mse"](out, TARGET, opts) / 16
    )


def test_regression_losses_train_the_regression_branch_of_a_classifier():
    out = fake_out()
    expect = ((out["reg"] - TARGET) ** 2).mean()
    assert torch.allclose(LOSSES["mse"](out, TARGET, LossOptions()), expect)
    plain = fake_out(cls=False)
    assert torch.allclose(
        LOSSES["mse"](plain, TARGET, LossOptions()), ((plain["score"] - TARGET) ** 2).mean()
    )


def test_target_bins_and_ce():
    assert target_bins(torch.tensor([1.0, 1.19, 1.2, 3.0, 4.99, 5.0]), 20).tolist() == [0, 0, 1, 10, 19, 19]
    assert target_bins(torch.tensor([1.0, 2.4, 5.0]), 8).tolist() == [0, 2, 7]
    out = fake_out()
    expect = F.cross_entropy(out["logits"], torch.tensor([2, 10, 19]))
    assert torch.allclose(LOSSES["ce"](out, TARGET, LossOptions()), expect)


def test_edm_root_is_the_per_item_square_root():
    out = fake_out()
    squared = LOSSES["edm"](out, TARGET, LossOptions(edm_root=False))
    rooted = LOSSES["edm"](out, TARGET, LossOptions(edm_root=True))
    assert not torch.allclose(squared, rooted)
    per_item = [
        LOSSES["edm"]({"logits": out["logits"][i : i + 1]}, TARGET[i : i + 1], LossOptions())
        for i in range(3)
    ]
    assert torch.allclose(rooted, torch.stack(per_item).sqrt().mean())
    one = {"logits": out["logits"][:1]}
    assert torch.allclose(
        LOSSES["edm"](one, TARGET[:1], LossOptions(edm_root=True)) ** 2,
        LOSSES["edm"](one, TARGET[:1], LossOptions(edm_root=False)),
    )


def test_edm_values():
    target = torch.tensor([3.1])
    perfect = torch.full((1, K), -30.0)
    perfect[0, 10] = 30.0
    assert LOSSES["edm"]({"logits": perfect}, target, LossOptions()).item() < 1e-10
    far = torch.full((1, K), -30.0)
    far[0, 0] = 30.0  # all mass 10 bins too low: CDF gap 1 over bins 0..9
    assert torch.allclose(LOSSES["edm"]({"logits": far}, target, LossOptions()), torch.tensor(10 / K))
    soft = target_distribution(target, K, LossOptions(edm_target="gaussian", edm_sigma=0.3))
    assert torch.allclose(soft.sum(), torch.tensor(1.0)) and soft.argmax().item() == 10
    assert 0 < soft[0, 10] < 1
    gauss = LOSSES["edm"]({"logits": perfect}, target, LossOptions(edm_target="gaussian"))
    assert gauss.item() > 1e-4  # a one-hot prediction is no longer a perfect match


def test_frame_edm_is_masked():
    out = fake_out()
    loss = LOSSES["frame-edm"](out, TARGET, LossOptions())
    changed = fake_out()
    with torch.no_grad():
        changed["frame_logits"][~changed["mask"]] = 50.0
    assert torch.allclose(LOSSES["frame-edm"](changed, TARGET, LossOptions()), loss)
    single = LOSSES["edm"]({"logits": out["frame_logits"][2, 1:2]}, TARGET[2:3], LossOptions())
    only_two = {"frame_logits": out["frame_logits"][2:, :2], "mask": out["mask"][2:, :2]}
    frame_mean = LOSSES["frame-edm"](only_two, TARGET[2:3], LossOptions())
    first = LOSSES["edm"]({"logits": out["frame_logits"][2, 0:1]}, TARGET[2:3], LossOptions())
    assert torch.allclose(frame_mean, (single + first) / 2)


def test_build_loss_combines_weighted_terms():
    out = fake_out()
    total, parts = build_loss("10*norm-mse+ce", {"edm_root": True, "lr": 1e-3})(out, TARGET)
    assert set(parts) == {"norm-mse", "ce"}
    expect = 10 * LOSSES["norm-mse"](out, TARGET, LossOptions()) + LOSSES["ce"](out, TARGET, LossOptions())
    assert torch.allclose(total, expect)
    assert parts["ce"] == pytest.approx(LOSSES["ce"](out, TARGET, LossOptions()).item())
    total.backward()
    assert out["reg"].grad.abs().sum() > 0 and out["logits"].grad.abs().sum() > 0


def test_build_loss_refuses_bad_specs():
    with pytest.raises(MosqaError, match="unknown loss 'l1'.*frame-edm"):
        build_loss("mse+l1")
    with pytest.raises(MosqaError, match="bad weight"):
        build_loss("ten*mse")
    with pytest.raises(MosqaError, match="ce.*head: cls"):
        build_loss("norm-mse+ce", head="reg")
    with pytest.raises(MosqaError, match="edm.*head: cls"):
        build_loss("edm")(fake_out(cls=False), TARGET)
    with pytest.raises(MosqaError, match="edm_target"):
        LossOptions(edm_target="uniform")
    assert set(NEEDS_CLS) <= set(LOSSES)


def test_losses_train_a_real_model_through_every_output():
    torch.manual_seed(0)
    model = build_model({"arch": "cnnA", "head": "cls"}, 16)
    lengths = torch.tensor([20, 13])
    x = torch.randn(2, 20, 16).abs()
    loss = build_loss("norm-mse+frame-mse-norm+ce+edm+frame-edm")
    total, parts = loss(model(x, lengths), torch.tensor([2.0, 4.0]))
    total.backward()
    assert all(value > 0 for value in parts.values())
    assert model.head.frame.weight.grad.abs().sum() > 0 and model.head.classifier.weight.grad.abs().sum() > 0
