"""Training losses: a registry per trainer, combined by the same weighted-term spec.

Quality models (train-qa), LOSSES: name -> fn(out, target, opts) -> scalar.

`out` is QualityModel's output dict (scores in MOS units), `target` the (B,) true MOS. Losses on
the normalised 0–1 scale normalise here, once. Frame losses use out["mask"] so padding never
counts, and none of them detaches the prediction. Classifier losses read the number of bins from
the logits, so they can never disagree with the model's `step`.

A spec combines weighted terms: "norm-mse+edm", "10*norm-mse+ce", "mse+frame-mse".

Enhancers (train-se), SPECTRAL_LOSSES: name -> fn(out, clean_spec, clean, lengths, c) -> scalar, where
`out` is SEModel.run's dict and `c` the magnitude compression exponent; specs such as "mag+0.5*complex".
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, compress_complex, stft
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


def parse_spec(spec: str, registry: dict = LOSSES) -> list[tuple[float, str]]:
    """ "10*norm-mse+ce" -> [(10.0, "norm-mse"), (1.0, "ce")], names from `registry`."""
    terms = []
    for term in str(spec).replace(" ", "").split("+"):
        weight, _, name = term.rpartition("*")
        if name not in registry:
            raise MosqaError(f"loss: unknown loss {name!r} in {spec!r}; choose from {', '.join(registry)}")
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


# ---------------------------------------------------------------- spectral losses (enhancers)


def _masked_mean(err: torch.Tensor, fmask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, F) errors over valid frames only."""
    return (err * fmask[..., None]).sum() / (fmask.sum() * err.shape[-1]).clamp(min=1)


def loss_mag(out, clean_spec, clean, lengths, c):
    """MSE of power-law compressed magnitudes."""
    est = (out["spec"].abs() + 1e-8) ** c
    ref = (clean_spec.abs() + 1e-8) ** c
    return _masked_mean((est - ref) ** 2, out["frame_mask"])


def loss_complex(out, clean_spec, clean, lengths, c):
    """MSE of compressed complex spectra: also penalises phase errors."""
    diff = compress_complex(out["spec"], c) - compress_complex(clean_spec, c)
    return _masked_mean(diff.real**2 + diff.imag**2, out["frame_mask"])


def loss_iam(out, clean_spec, clean, lengths, c):
    """MSE between the predicted mask and the ideal amplitude mask |S|/|Y| (clipped at 1)."""
    iam = (clean_spec.abs() / (out["noisy_spec"].abs() + 1e-8)).clamp(max=1.0)
    return _masked_mean((out["mask"].abs() - iam) ** 2, out["frame_mask"])


def si_snr_torch(ref: torch.Tensor, est: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-8):
    """(B,) scale-invariant SNR in dB over each item's valid samples."""
    m = (torch.arange(ref.shape[-1], device=ref.device)[None] < lengths[:, None].to(ref.device)).float()
    n = m.sum(1, keepdim=True)
    ref = (ref - (ref * m).sum(1, keepdim=True) / n) * m
    est = (est - (est * m).sum(1, keepdim=True) / n) * m
    target = (est * ref).sum(1, keepdim=True) / ((ref * ref).sum(1, keepdim=True) + eps) * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(1) + eps) / (noise.pow(2).sum(1) + eps))


def loss_sisnr(out, clean_spec, clean, lengths, c):
    # Scaled down so that its size is comparable with the spectral MSEs at equal weights.
    return -si_snr_torch(clean, out["wav"], lengths).mean() / 100.0


SPECTRAL_LOSSES = {"mag": loss_mag, "complex": loss_complex, "sisnr": loss_sisnr, "iam": loss_iam}
TARGETS = {"mag": None, "iam": "iam"}  # --target iam replaces the loss by the mask loss


def spectral_terms(spec: str, weights=None, target: str = "mag") -> list[tuple[float, str]]:
    """'mag+complex' with weights '1,0.5' -> [(1.0, 'mag'), (0.5, 'complex')]; target iam: the IAM loss."""
    if target not in TARGETS:
        raise MosqaError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if TARGETS[target] is not None:
        return [(1.0, TARGETS[target])]
    terms = parse_spec(spec, SPECTRAL_LOSSES)
    if weights is None:
        return terms
    try:
        values = [float(w) for w in str(weights).split(",")]
    except ValueError:
        raise MosqaError(f"--loss-weights {weights!r}: expected comma-separated numbers") from None
    if len(values) != len(terms):
        raise MosqaError(f"--loss-weights gives {len(values)} weights for {len(terms)} loss terms")
    return [(w, name) for w, (_, name) in zip(values, terms, strict=True)]


def build_spectral_loss(terms: list[tuple[float, str]], fe: FrontEnd, compress: float):
    """callable(out, clean, lengths) -> weighted sum of the terms; the clean STFT stays in float32."""

    def loss(out: dict, clean: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.autocast(clean.device.type, enabled=False):
            clean_spec = stft(clean.float(), fe)
        return sum(w * SPECTRAL_LOSSES[name](out, clean_spec, clean, lengths, compress) for w, name in terms)

    return loss
