"""Training losses for quality models: a registry name -> fn(out, target, opts) -> scalar.

`out` is QualityModel's output dict (scores in MOS units), `target` the (B,) true MOS. Losses on
the normalised 0–1 scale normalise here, once. Frame losses use out["mask"] so padding never
counts, and none of them detaches the prediction. Classifier losses read the number of bins from
the logits, so they can never disagree with the model's `step`.

A spec combines weighted terms: "norm-mse+edm", "10*norm-mse+ce", "mse+frame-mse".
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mosqa.errors import MosqaError
from mosqa.heads import MOS_MIN, MOS_RANGE, bin_centres, masked_mean

EDM_TARGETS = ("onehot", "gaussian")


@dataclass(frozen=True)
class LossOptions:
    y_max: float = 5.0  # frame losses weigh an utterance by 10^(y - y_max), y in MOS units
    edm_root: bool = False  # True: NIMA's EMD (root of the mean squared CDF gap); False: squared EMD
    edm_target: str = "onehot"  # onehot | gaussian soft label around the true score
    edm_sigma: float = 0.25  # std of the gaussian label, in MOS units

    def __post_init__(self):
        if self.edm_target not in EDM_TARGETS:
            raise MosqaError(
                f"loss: edm_target must be one of {', '.join(EDM_TARGETS)}, got {self.edm_target!r}"
            )
        if self.edm_sigma <= 0:
            raise MosqaError(f"loss: edm_sigma must be > 0, got {self.edm_sigma}")


def normalise(mos: torch.Tensor) -> torch.Tensor:
    """MOS 1–5 -> 0–1, the scale of the log's normalised losses."""
    return (mos - MOS_MIN) / MOS_RANGE


def _regression(out: dict) -> torch.Tensor:
    """The score a regression loss trains: the regression branch of a classifier, else the score."""
    return out.get("reg", out["score"])


def mse(out, target, opts):
    return ((_regression(out) - target) ** 2).mean()


def norm_mse(out, target, opts):
    return ((normalise(_regression(out)) - normalise(target)) ** 2).mean()


def _frame_constraint(out, target, opts, scale=1.0):
    """Quality-Net's frame term: every valid frame pulled to the utterance label, clean clips weigh most.

    `scale` shrinks the error (1/4 for the normalised scale); the weight always uses MOS units.
    """
    per_clip = masked_mean(((out["frame"] - target[:, None]) * scale) ** 2, out["mask"])
    return (10.0 ** (target - opts.y_max) * per_clip).mean()


def frame_mse(out, target, opts):
    return _frame_constraint(out, target, opts)


def frame_mse_norm(out, target, opts):
    return _frame_constraint(out, target, opts, scale=1 / MOS_RANGE)


def target_bins(target: torch.Tensor, k: int) -> torch.Tensor:
    """Index of the bin holding each true score; a score on an edge (1.4 for step 0.2) goes up, despite
    float rounding, and 5.0 falls in the top bin."""
    return (normalise(target) * k + 1e-4).floor().long().clamp(0, k - 1)


def target_distribution(target: torch.Tensor, k: int, opts) -> torch.Tensor:
    """(B, K) target over the bins: one-hot, or a gaussian around the true score."""
    if opts.edm_target == "onehot":
        return F.one_hot(target_bins(target, k), k).to(target.dtype)
    centres = bin_centres(k, target.device)
    p = torch.exp(-((centres - target[:, None]) ** 2) / (2 * opts.edm_sigma**2))
    return p / p.sum(-1, keepdim=True)


def _edm(logits: torch.Tensor, target: torch.Tensor, root: bool) -> torch.Tensor:
    """Per-distribution EMD over ordered bins: mean of squared CDF gaps, its root if `root`."""
    gap = torch.cumsum(torch.softmax(logits, -1), -1) - torch.cumsum(target, -1)
    e = (gap**2).mean(-1)
    return e.clamp_min(1e-12).sqrt() if root else e


def _logits(out: dict, key: str, loss: str) -> torch.Tensor:
    if key not in out:
        raise MosqaError(f"loss: {loss!r} needs a classifier model (head: cls)")
    return out[key]


def ce(out, target, opts):
    logits = _logits(out, "logits", "ce")
    return F.cross_entropy(logits, target_bins(target, logits.shape[-1]))


def edm(out, target, opts):
    logits = _logits(out, "logits", "edm")
    return _edm(logits, target_distribution(target, logits.shape[-1], opts), opts.edm_root).mean()


def frame_edm(out, target, opts):
    logits = _logits(out, "frame_logits", "frame-edm")
    dist = target_distribution(target, logits.shape[-1], opts)[:, None, :]
    return masked_mean(_edm(logits, dist, opts.edm_root), out["mask"]).mean()


LOSSES = {
    "mse": mse,
    "norm-mse": norm_mse,
    "frame-mse": frame_mse,
    "frame-mse-norm": frame_mse_norm,
    "ce": ce,
    "edm": edm,
    "frame-edm": frame_edm,
}
NEEDS_CLS = ("ce", "edm", "frame-edm")


def parse_spec(spec: str) -> list[tuple[float, str]]:
    """ "10*norm-mse+ce" -> [(10.0, "norm-mse"), (1.0, "ce")]."""
    terms = []
    for term in str(spec).replace(" ", "").split("+"):
        weight, _, name = term.rpartition("*")
        if name not in LOSSES:
            raise MosqaError(f"loss: unknown loss {name!r} in {spec!r}; choose from {', '.join(LOSSES)}")
        try:
            terms.append((float(weight) if weight else 1.0, name))
        except ValueError:
            raise MosqaError(f"loss: bad weight {weight!r} in {spec!r} (write e.g. 10*norm-mse+ce)") from None
    return terms


def build_loss(spec: str, opts: LossOptions | dict | None = None, head: str | None = None):
    """callable(out, target) -> (total, {name: value}). `head` (if known) refuses cls losses early."""
    terms = parse_spec(spec)
    if isinstance(opts, dict):
        opts = LossOptions(**{k: v for k, v in opts.items() if k in LossOptions.__dataclass_fields__})
    opts = opts or LossOptions()
    if head is not None and head != "cls":
        needs = [name for _, name in terms if name in NEEDS_CLS]
        if needs:
            raise MosqaError(
                f"loss: {', '.join(needs)} needs a classifier model (head: cls), not head {head!r}"
            )

    def loss(out: dict, target: torch.Tensor):
        total, parts = 0.0, {}
        for weight, name in terms:
            value = LOSSES[name](out, target, opts)
            parts[name] = float(value.detach())
            total = total + weight * value
        return total, parts

    return loss
