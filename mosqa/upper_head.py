"""The encoder's upper layers fine-tuned on cached frames (issue 30, candidate e).

Why: the six convolutions are ~14 of the ~15 GFLOP the frozen Distill-MOS encoder spends on a 4 s clip.
With its layer-4 frames cached once per clip, a copy of what comes after (layers 5-7, the output norm,
the attention pool, the listener layer) trains for many epochs, with a new linear head for the PESQ
score and the diagnostics (campaign.OUTPUTS) on the pooled vector and the listener MOS. The ridge heads
can only reweigh what the frozen layers pool; these can change what is pooled. On one core (2026-12-06)
caching took 0.21 s a clip and an epoch 60 s a 1,000 clips.

Choices:
- Caching runs all seven frozen layers, not only four: the frozen listener MOS, the distillation target,
  needs the other three, and they cost ~3 % of the pass.
- Windows: a clip longer than 7.68 s is cut as distill_mos.split_windows cuts it for the features the
  ridge heads read, each window an item of its own, and a clip's outputs are the mean over its windows
  (as `features` averages them). Cropping to the first window would drop the rest of the tenth of a
  shard's clips that are longer, and with it impairments the clip's label counts.
- norm_out (a BatchNorm) stays in eval mode: a per-frame affine map whose weight and bias train on fixed
  running statistics. Batch statistics would count the padding and change what the untrained copy scores.
- The head starts as campaign's ridge fit on the untrained copy's pooled vector and listener MOS (the
  "pool + score" candidate, strengths picked on the first validation set), so the layers are tuned
  towards a head that already works (a linear probe before fine-tuning distorts pretrained features less:
  Kumar et al., ICLR 2022) and epoch 0 of the history is that ridge head.
- Loss: each output's MSE over its training variance (the score weighs 1, the six diagnostics
  `diagnostics` together), plus `distill` times the MSE of every window's listener MOS against the frozen
  encoder's, over its training variance: the listener layer keeps answering for listeners while the layers
  under it move. No target is ever missing (diagnostics.target_value gives a clip without an impairment
  its `absent` value; both renderers skip a clip PESQ refuses), so there is no mask: a NaN is refused.
"""

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from mosqa import campaign
from mosqa.audio import load_audio
from mosqa.distill_mos import DIM, pool, split_windows
from mosqa.errors import MosqaError
from mosqa.runs import load_checkpoint, save_checkpoint

LAYER = 4  # the frozen layers run once per clip up to this one (1-based); the ones above it train
OUTPUTS = campaign.OUTPUTS
BATCH = 16  # clips a step
RUN = 32  # batches whose clips are sorted by length together: the shuffle keeps this much mixing
CHECKPOINT = "upper.pt"


# ---------------------------------------------------------------- the frame cache
@dataclass
class Frames:
    """A set's cached frames: every window's, concatenated, clips in order."""

    frames: torch.Tensor  # (all frames, DIM) float16
    starts: torch.Tensor  # (windows + 1,): window w is frames[starts[w]:starts[w + 1]]
    first: torch.Tensor  # (clips + 1,): clip c is windows first[c]:first[c + 1]
    listener: torch.Tensor  # (windows,) the frozen encoder's MOS of each window: the distillation target

    @property
    def clips(self) -> int:
        return len(self.first) - 1

    def clip_listener(self) -> np.ndarray:
        """(clips,) the frozen encoder's MOS of each clip, averaged over its windows."""
        sums = np.add.reduceat(self.listener.double().numpy(), self.first[:-1].numpy())
        return sums / np.diff(self.first.numpy())


def _cache_part(layer: int, worker: dict, paths: list) -> dict:
    enc, frames, windows, listener = worker["encoder"], [], [], []
    with torch.inference_mode():
        for path in paths:
            cut = split_windows(torch.from_numpy(load_audio(path))[None])
            if not cut:
                raise MosqaError(f"{path}: too short for the encoder (under 40 ms)")
            for wav in cut:
                out = enc.frames(wav)  # every layer: the ones above `layer` give the distillation target
                frames.append(out[layer][0].half().numpy())
                listener.append(float(out["score"][0]))
            windows.append(len(cut))
    return {"frames": np.concatenate(frames), "lengths": np.array([len(f) for f in frames]),
            "windows": np.array(windows), "listener": np.array(listener, dtype=np.float32)}


def _save_part(f, part: dict) -> None:
    np.savez(f, **part)


def _offsets(counts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))


def cache_frames(paths: list, cache_dir, jobs: int = 1, layer: int = LAYER, progress=None) -> Frames:
    """The frozen encoder's layer-`layer` frames of `paths` and its MOS of every window, saved as one .npz
    a campaign.PART clips under `cache_dir` (campaign.cached_parts: a missing part is made, the others
    kept, in `jobs` processes)."""
    files = campaign.cached_parts(paths, cache_dir, jobs, functools.partial(_cache_part, layer), _save_part,
                                  "npz", progress=progress)
    parts = []
    for f in files:
        with np.load(f, allow_pickle=False) as data:
            parts.append({k: data[k] for k in data.files})
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Frames(torch.from_numpy(cat["frames"]), _offsets(cat["lengths"]), _offsets(cat["windows"]),
                  torch.from_numpy(cat["listener"]))


# ---------------------------------------------------------------- the model
class UpperHead(nn.Module):
    """The frozen encoder's layers above `layer`, norm_out, attention pool and listener layer, copied to
    train, and a linear head for OUTPUTS on the pooled vector and the listener MOS. The head works in
    standardised targets (target_mean, target_scale: each output's steps alike to Adam)."""

    def __init__(self, encoder: nn.Module, layer: int = LAYER):
        super().__init__()
        self.layers = copy.deepcopy(encoder.layers[layer:])
        self.norm_out, self.att_hidden, self.att_score, self.out = copy.deepcopy(
            (encoder.norm_out, encoder.att_hidden, encoder.att_score, encoder.out))
        self.head = nn.Linear(DIM + 1, len(OUTPUTS))
        self.register_buffer("target_mean", torch.zeros(len(OUTPUTS)))
        self.register_buffer("target_scale", torch.ones(len(OUTPUTS)))
        self.requires_grad_(True)
        self.train()

    def train(self, mode: bool = True):
        """norm_out stays in eval mode (the module docstring says why); the layers have no dropout, so the
        two modes compute the same function, and scoring runs in training mode under no_grad: torch's
        eval-mode fast path is 2.4x slower on a padded batch on the CPU."""
        super().train(mode)
        self.norm_out.eval()
        return self

    def features(self, frames: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """(B, T, DIM) frames, (B, T) True on padding -> (B, DIM + 1): the attention pool and listener MOS."""
        x = frames.float()
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        pooled, listener = pool(self, x, pad)
        return torch.cat([pooled, listener[:, None]], dim=1)

    def forward(self, frames: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ((B, K) outputs in the targets' units, (B,) listener MOS)."""
        feats = self.features(frames, pad)
        return self.head(feats) * self.target_scale + self.target_mean, feats[:, -1]


def _batch(data: Frames, clips: torch.Tensor, device) -> tuple:
    """The windows of `clips`, padded: frames (W, T, DIM), pad (W, T), owner (W,) (the position in `clips`
    of each window's clip) and the frozen listener MOS (W,)."""
    counts = data.first[clips + 1] - data.first[clips]
    windows = torch.cat([torch.arange(data.first[c], data.first[c + 1]) for c in clips.tolist()])
    lengths = data.starts[windows + 1] - data.starts[windows]
    x = pad_sequence([data.frames[data.starts[w]:data.starts[w + 1]] for w in windows.tolist()],
                     batch_first=True)
    pad = torch.arange(x.shape[1])[None] >= lengths[:, None]
    owner = torch.repeat_interleave(torch.arange(len(clips)), counts)
    return x.to(device), pad.to(device), owner.to(device), data.listener[windows].to(device)


def _clip_mean(x: torch.Tensor, owner: torch.Tensor, clips: int) -> torch.Tensor:
    """(W, ...) per window -> (clips, ...) the mean over each clip's windows."""
    total = torch.zeros((clips, *x.shape[1:]), dtype=x.dtype, device=x.device).index_add_(0, owner, x)
    counts = torch.bincount(owner, minlength=clips).to(x.dtype)
    return total / counts.view(-1, *[1] * (x.dim() - 1))


def _batches(data: Frames, order: np.ndarray, batch: int) -> list[torch.Tensor]:
    """`order`'s clips in batches of alike length: sorted by length within runs of RUN batches (a batch
    pads its windows to its longest, and a random one of 1-8 s clips spends half its time on padding)."""
    frames = (data.starts[data.first[1:]] - data.starts[data.first[:-1]]).numpy()
    run = RUN * batch
    ordered = np.concatenate([r[np.argsort(frames[r], kind="stable")]
                              for r in np.split(order, range(run, len(order), run))])
    return [torch.from_numpy(ordered[i:i + batch]) for i in range(0, len(ordered), batch)]


@torch.no_grad()
def _per_clip(fn, data: Frames, device, batch: int = BATCH) -> np.ndarray:
    """(clips, D): fn(frames, pad) -> (W, D) averaged over each clip's windows."""
    batches, means = _batches(data, np.arange(data.clips), batch), []
    for clips in batches:
        x, pad, owner, _ = _batch(data, clips, device)
        means.append(_clip_mean(fn(x, pad), owner, len(clips)).double().cpu().numpy())
    out = np.empty((data.clips, means[0].shape[1]))
    out[torch.cat(batches).numpy()] = np.concatenate(means)
    return out


def predict(model: UpperHead, data: Frames, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """((clips, K) outputs clipped to their ranges, (clips,) listener MOS), each a mean over the windows."""
    model.train()  # the same function, faster (UpperHead.train)
    out = _per_clip(lambda x, pad: torch.column_stack(model(x, pad)), data, device)
    return campaign.clip_outputs(out[:, :-1]), out[:, -1]


# ---------------------------------------------------------------- training
def fit_head(model: UpperHead, train_set: tuple, valid_set: tuple, device="cpu") -> None:
    """The head := campaign's ridge fit on the model's features of the training clips (strengths per output
    picked on `valid_set`), in targets standardised by the training ones'."""
    (data, y), (vdata, vy) = train_set, valid_set
    model.train()  # the same function, faster (UpperHead.train)
    x, xv = (_per_clip(model.features, d, device) for d in (data, vdata))
    state = campaign.new_state(x, rank=x.shape[1])
    campaign.accumulate(state, x, y)
    w, b = campaign.head_weights(state, campaign.select_lambdas(state, campaign.project(state, xv), vy))
    mean, sd = y.mean(axis=0), y.std(axis=0)
    scale = np.where(sd > 0, sd, 1.0)  # a target constant in training stays at its value
    with torch.no_grad():
        model.target_mean.copy_(torch.from_numpy(mean))
        model.target_scale.copy_(torch.from_numpy(scale))
        model.head.weight.copy_(torch.from_numpy((w / scale).T))
        model.head.bias.copy_(torch.from_numpy((b - mean) / scale))


def loss(model: UpperHead, batch: tuple, y: torch.Tensor, diagnostics: float, distill: float,
         listener_scale: float) -> torch.Tensor:
    """The training loss of one batch of clips (module docstring), y (clips, K) their targets."""
    x, pad, owner, frozen = batch
    out, listener = model(x, pad)
    per_output = (((_clip_mean(out, owner, len(y)) - y) / model.target_scale) ** 2).mean(dim=0)
    weights = torch.full_like(per_output, diagnostics / (len(OUTPUTS) - 1))
    weights[0] = 1.0
    return (weights * per_output).sum() + distill * (((listener - frozen) / listener_scale) ** 2).mean()


def scores(model: UpperHead, sets: dict, device="cpu") -> dict:
    """Per set: the score's LCC and the listener drift (LCC and mean |difference| of the model's listener
    MOS against the frozen encoder's)."""
    row = {}
    for name, (data, y) in sets.items():
        pred, listener = predict(model, data, device)
        frozen = data.clip_listener()
        row |= {f"{name}_lcc": campaign.output_quality("score", pred[:, 0], y[:, 0]),
                f"{name}_drift_lcc": campaign.output_quality("score", listener, frozen),
                f"{name}_drift_mae": float(np.mean(np.abs(listener - frozen)))}
    return row


def _epoch(model: UpperHead, opt, train_set: tuple, rng: np.random.Generator, batch: int,
           diagnostics: float, distill: float, device) -> float:
    """One pass over the training clips in an order drawn from `rng`; the mean loss a clip."""
    data, y = train_set
    target = torch.tensor(y, dtype=torch.float32, device=device)
    listener_scale = float(data.listener.std())
    batches = _batches(data, rng.permutation(data.clips), batch)
    model.train()
    total = 0.0
    for b in rng.permutation(len(batches)):
        clips = batches[b]
        step = loss(model, _batch(data, clips, device), target[clips.to(device)], diagnostics, distill,
                    listener_scale)
        opt.zero_grad()
        step.backward()
        opt.step()
        total += step.item() * len(clips)
    return total / data.clips


def train(model: UpperHead, train_set: tuple, valid_sets: dict, out_dir, epochs: int, seed: int = 0,
          batch: int = BATCH, lr: float = 1e-4, head_lr: float = 1e-3, diagnostics: float = 0.5,
          distill: float = 1.0, device="cpu", log=print) -> tuple[UpperHead, list[dict]]:
    """Fine-tune `model` on train_set = (Frames, (clips, K) targets) for `epochs` epochs, scoring every
    (Frames, targets) of `valid_sets` after each; the first of them picks the best epoch by its score LCC.
    The state after each epoch goes to out_dir/upper.pt, from which a cut training resumes as if uncut.
    -> (the model with the best epoch's weights, the history: one row an epoch, 0 the ridge start)."""
    if not all(np.isfinite(y).all() for _, y in (train_set, *valid_sets.values())):
        raise MosqaError("upper head: a target is not finite (read the sets with campaign.read_set)")
    selector = f"{next(iter(valid_sets))}_lcc"
    model.to(device)
    copied = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    opt = torch.optim.AdamW([{"params": copied, "lr": lr},
                             {"params": model.head.parameters(), "lr": head_lr}])
    path = Path(out_dir) / CHECKPOINT
    if path.is_file():
        ckpt = load_checkpoint(path, device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history, best, best_epoch = ckpt["history"], ckpt["best"], ckpt["best_epoch"]
    else:
        fit_head(model, train_set, next(iter(valid_sets.values())), device)
        history, best, best_epoch = [], None, 0
    for epoch in range(len(history), epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        step = _epoch(model, opt, train_set, rng, batch, diagnostics, distill, device) if epoch else np.nan
        history.append({"epoch": epoch, "loss": step} | scores(model, valid_sets, device))
        log(", ".join(f"{k} {v:.4f}" if k != "epoch" else f"epoch {v}" for k, v in history[-1].items()))
        if best is None or history[-1][selector] > history[best_epoch][selector]:
            best, best_epoch = {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch
        save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "history": history,
                               "best": best, "best_epoch": best_epoch})
    model.load_state_dict(best)
    return model, history
