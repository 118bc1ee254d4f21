"""Quality guidance for train-se: a quality model (the critic) as part of the enhancer's loss.

Critics (`--qa-model`): a train-qa run directory, a quality model shipped in the package by name
(`pesq-wb`, through mosqa.qa.load_qa), `dnsmos` (the torch DNSMOS of mosqa.dnsmos.load_torch; which
score it gives, `--dnsmos-target`, e.g. `ovrl` or `0.5*sig+0.5*bak`), or `intrusive` (learn only: an
untrained critic that reads the clean reference beside the enhanced speech, MetricGAN's form;
mosqa.intrusive_critic). A train-qa model can learn; DNSMOS is fixed, so it serves only the modes that
leave the critic as it is.

Modes (`--qa`):
  none    spectral loss only.
  frozen  spectral + weight * mean((1 - q)^2): a fixed quality model scores the enhanced speech
          (normalised score q in 0..1); its weights never change but the gradient reaches the enhancer.
  grl     the quality model keeps learning to predict the true PESQ of the enhanced speech, while
          the enhancer receives that loss's gradient reversed (scaled by lambda): adversarial.
  joint   spectral loss every step; every `qa_every` steps the enhancer also gets mean((1 - q)^2).
          The log says only that this term is computed at every step, not whether the critic learns,
          so `--qa-update` (MetricGAN-style: the critic follows the enhancer on the true PESQ of the
          enhanced batch, so it cannot be fooled for long) and `--no-qa-update` are both runnable.
  learn   MetricGAN+: the enhancer gets spectral + weight * mean((1 - q)^2), and every step the critic
          learns the true PESQ-WB (computed in `--pesq-workers` processes) of the enhanced batch, of
          the clean references (the top of the scale), of the noisy inputs, and of as many earlier
          outputs drawn from a replay buffer (`--replay-size`), so it neither falls behind the
          enhancer nor forgets what it used to produce. `--critic-init pretrained` starts from
          --qa-model's weights, `scratch` from its architecture freshly initialised (the intrusive
          critic has no pretrained weights), a file from a warm critic: `--critic-warmup STEPS` first
          teaches the critic the true PESQ of a ladder of enhancers' outputs (mosqa.warmup) and saves
          it as critic_warm.pt, which `--critic-init critic_warm.pt` gives another run. The critic's
          score of each fresh batch, taken before it learns that batch, against the true PESQ is
          the run's watch on exploitation: metrics.csv's critic_lcc and critic_mae per epoch.
A learning critic trains the part of the quality model its best.pt holds (a train-qa model whole; for
the shipped encoder model, its head: the frozen Distill-MOS encoder stays as it is).
The critic always reads the enhanced *waveform* through its own front end, so it sees exactly the
features it was trained on.
"""

import math
import random
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from mosqa.audio import resample
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd
from mosqa.losses import parse_spec
from mosqa.metrics import PESQ_RATE, pesq_wb_or_nan
from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config, save_checkpoint
from mosqa.workers import die_with_parent

PESQ_RANGE = (1.0, 4.64)


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return GradientReversal.apply(x, scale)


class NormalisedQA(torch.nn.Module):
    """QAScorer.normalised as `forward`, so DistributedDataParallel can wrap a trainable critic."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, wav, lengths, ref=None):
        """A non-intrusive model: the clean reference a learning critic is handed goes unheard."""
        return self.scorer.normalised(wav, lengths)


def true_pesq(clean: torch.Tensor, est: torch.Tensor, lengths: torch.Tensor, sr: int,
              workers: ProcessPoolExecutor | None = None) -> torch.Tensor:
    """(B,) PESQ-WB of each enhanced item on the normalised 0..1 scale; NaN where PESQ finds no speech.
    With `workers` (pesq_workers) the items are scored in those processes, the same numbers."""
    return pending_pesq(clean, est, lengths, sr, workers)()


def pending_pesq(clean, est, lengths, sr: int, workers: ProcessPoolExecutor | None = None):
    """true_pesq in two halves: the items go to the workers now; the returned function waits for the
    scores (with no workers it computes them), so the caller can work meanwhile."""
    clean, est = clean.detach().float().cpu().numpy(), est.detach().float().cpu().numpy()
    pairs = [(resample(s[:n], sr, PESQ_RATE), resample(e[:n], sr, PESQ_RATE))
             for s, e, n in zip(clean, est, lengths.tolist(), strict=True)]
    futures = [workers.submit(pesq_wb_or_nan, r, d) for r, d in pairs] if workers is not None else None

    def scores() -> torch.Tensor:
        raw = [f.result() for f in futures] if futures is not None else [pesq_wb_or_nan(*p) for p in pairs]
        return torch.tensor([p if math.isnan(p) else (min(max(p, PESQ_RANGE[0]), PESQ_RANGE[1]) - 1.0) / 4.0
                             for p in raw], dtype=torch.float32)

    return scores


def pesq_workers(n: int) -> ProcessPoolExecutor | None:
    """n processes for true PESQ (None: in this process). Spawned, not forked: a fork of a process whose
    torch threads are running can hang."""
    if n < 1:
        return None
    return ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=die_with_parent)


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the critic's normalised score against true PESQ, over the items PESQ could score."""
    ok = ~torch.isnan(target)
    if not ok.any():
        return q.sum() * 0.0
    return ((q[ok] - target[ok].to(q.device)) ** 2).mean()


def quality_term(critic, enh, lengths) -> torch.Tensor:
    """mean((1 - q)^2): the enhancer's loss from the critic's normalised score of its output."""
    return shortfall(critic(enh, lengths))


def shortfall(q: torch.Tensor) -> torch.Tensor:
    """mean((1 - q)^2) of normalised scores q: how far the enhanced batch is from the top of the scale."""
    return ((1.0 - q) ** 2).mean()


def qa_frozen(critic, enh, clean, lengths, cfg, step, noisy=None, learner=None):
    return cfg["qa_weight"] * quality_term(critic, enh, lengths)


def qa_grl(critic, enh, clean, lengths, cfg, step, noisy=None, learner=None):
    target = true_pesq(clean, enh, lengths, cfg["sample_rate"])
    q = critic(grad_reverse(enh, cfg["grl_lambda"]), lengths)
    return cfg["qa_weight"] * critic_loss(q, target)


def qa_joint(critic, enh, clean, lengths, cfg, step, noisy=None, learner=None):
    if step % cfg["qa_every"]:
        return None
    if not critic_learns_in_joint(cfg):
        return cfg["qa_weight"] * quality_term(critic, enh, lengths)
    enh_term = shortfall(held_score(critic, enh, lengths))
    target = true_pesq(clean, enh, lengths, cfg["sample_rate"])
    return cfg["qa_weight"] * enh_term + critic_loss(critic(enh.detach(), lengths), target)


def held_score(critic, *inputs) -> torch.Tensor:
    """The critic's normalised score with its weights held: the enhancer's term must not teach the critic
    to say "perfect"; its gradient still reaches the enhanced waveform."""
    params = [p for p in critic.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        return critic(*inputs)
    finally:
        for p in params:
            p.requires_grad_(True)


class Learner:
    """What --qa learn keeps between steps: the PESQ worker processes, the replay buffer of earlier
    enhanced items with their true scores, and the critic's (score, true score) on fresh batches."""

    def __init__(self, cfg: dict):
        self.workers = pesq_workers(cfg["pesq_workers"])
        self.size = cfg["replay_size"]
        # (enhanced waveform at its length, its clean reference, normalised PESQ)
        self.replay: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        self.rng = random.Random(cfg["seed"])
        self.seen: list[tuple[float, float]] = []

    def remember(self, enh: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor,
                 target: torch.Tensor) -> None:
        """Add items to the buffer; once full, each replaces a random older one (reservoir-like, so the
        buffer spans the whole run, not only its last steps)."""
        rows = zip(enh.detach().cpu(), ref.detach().cpu(), lengths.tolist(), target.tolist(), strict=True)
        for wav, clean, n, t in rows:
            if math.isnan(t):
                continue
            item = (wav[: int(n)].clone(), clean[: int(n)].clone(), t)
            if len(self.replay) < self.size:
                self.replay.append(item)
            else:
                self.replay[self.rng.randrange(self.size)] = item

    def recall(self, k: int, width: int, device) -> tuple[torch.Tensor, ...] | None:
        """k earlier items, zero-padded to `width` samples: (wav, ref, lengths, targets), or None if empty."""
        if not self.replay or k <= 0:
            return None
        items = self.rng.sample(self.replay, min(k, len(self.replay)))
        wav, ref = torch.zeros(len(items), width), torch.zeros(len(items), width)
        for i, (w, c, _) in enumerate(items):
            wav[i, : min(len(w), width)], ref[i, : min(len(c), width)] = w[:width], c[:width]
        lengths = torch.tensor([min(len(w), width) for w, _, _ in items])
        return wav.to(device), ref.to(device), lengths.to(device), torch.tensor([t for _, _, t in items])

    def watch(self, q: torch.Tensor, target: torch.Tensor) -> None:
        self.seen += list(zip(q.tolist(), target.tolist(), strict=True))

    def epoch_figures(self) -> dict:
        """The critic against true PESQ on the enhanced batches it had not yet learned, since the last
        call (`agreement`)."""
        seen, self.seen = self.seen, []
        return agreement(seen)

    def pending(self, clean, enh, noisy, lengths, sr: int):
        """The true PESQ of the enhanced and of the noisy items, sent to the workers now; the returned
        function waits for both."""
        enh_scores = pending_pesq(clean, enh, lengths, sr, self.workers)
        noisy_scores = pending_pesq(clean, noisy, lengths, sr, self.workers)
        return lambda: (enh_scores(), noisy_scores())

    def lesson(self, critic, enh, clean, noisy, lengths, q_enh, targets) -> torch.Tensor:
        """The critic's loss on one batch: the enhanced items (its score `q_enh` of them, taken before it
        learns them, goes to the watch), the clean references (the top of the scale), the noisy inputs
        and as many replayed items, each against its true PESQ (`targets`: what `pending` returned).
        Each item goes with its clean reference, which only an intrusive critic hears."""
        target_enh, target_noisy = targets()
        self.watch(q_enh.detach(), target_enh)
        wavs, refs, lens = [enh.detach(), clean, noisy], [clean, clean, clean], [lengths, lengths, lengths]
        scores = [target_enh, torch.ones(len(clean)), target_noisy]  # a clean reference scores the top
        replayed = self.recall(len(enh), enh.shape[-1], enh.device)
        if replayed is not None:
            for items, part in zip((wavs, refs, lens, scores), replayed, strict=True):
                items.append(part)
        self.remember(enh, clean, lengths, target_enh)
        q = critic(torch.cat(wavs), torch.cat(lens), torch.cat(refs))
        return critic_loss(q, torch.cat(scores))

    def close(self) -> None:
        if self.workers is not None:
            self.workers.shutdown()


def agreement(pairs) -> dict:
    """A critic against true PESQ over (its normalised score, the true normalised PESQ) pairs, those PESQ
    could not score left out: Pearson LCC and mean absolute error in PESQ units (the normalised scale
    is PESQ / 4); {} for fewer than two."""
    seen = np.array([p for p in pairs if not math.isnan(p[1])], dtype=np.float64).reshape(-1, 2)
    if len(seen) < 2:
        return {}
    q, t = seen.T
    lcc = float(np.corrcoef(q, t)[0, 1]) if q.std() > 0 and t.std() > 0 else float("nan")
    return {"critic_lcc": lcc, "critic_mae": float(np.abs(q - t).mean() * 4.0)}


def qa_learn(critic, enh, clean, lengths, cfg, step, noisy=None, learner=None):
    """MetricGAN+: the enhancer's quality term from the critic as it is, plus the critic's own loss on
    (enhanced, clean, noisy, replayed) items with their true PESQ (Learner.lesson). The two share no
    gradient: the critic learns from detached audio, and its weights are held for the enhancer's term."""
    targets = learner.pending(clean, enh, noisy, lengths, cfg["sample_rate"])
    q_enh = held_score(critic, enh, lengths, clean)  # while the workers score
    return cfg["qa_weight"] * shortfall(q_enh) + learner.lesson(critic, enh, clean, noisy, lengths, q_enh,
                                                                targets)


# mode -> the term added to the enhancer's loss (None: spectral only); each gets the step's batch and,
# for learn, its Learner.
QA_TERMS = {"none": None, "frozen": qa_frozen, "grl": qa_grl, "joint": qa_joint, "learn": qa_learn}
# The options each mode reads; the others are refused when given (they would change nothing).
USES = {
    "none": (),
    "frozen": ("qa_model", "qa_weight"),
    "grl": ("qa_model", "qa_weight", "grl_lambda", "qa_lr"),
    "joint": ("qa_model", "qa_weight", "qa_every", "qa_update", "qa_lr"),
    "learn": ("qa_model", "qa_weight", "qa_lr", "critic_init", "replay_size", "pesq_workers", "critic_warmup",
              "critic_warmup_lcc", "critic_warmup_from"),
}
OPTIONS = ("qa_model", "qa_weight", "qa_every", "qa_update", "grl_lambda", "qa_lr", "dnsmos_target",
           "critic_init", "replay_size", "pesq_workers", "critic_warmup", "critic_warmup_lcc",
           "critic_warmup_from")
WARMUP_OPTIONS = ("critic_warmup_lcc", "critic_warmup_from")  # read only with --critic-warmup
CRITIC_INITS = ("pretrained", "scratch")  # any other --critic-init is a warm critic's file
WARM_FILE = "critic_warm.pt"
# DNSMOS scores a --dnsmos-target may weigh, and the key load_torch's module returns each under.
DNSMOS_SCORES = {"sig": "SIG", "bak": "BAK", "ovrl": "OVRL", "p808": "P808"}
DNSMOS = "dnsmos"
INTRUSIVE = "intrusive"
DNSMOS_RATE = 16000


def updates_critic(cfg: dict) -> bool:
    """grl and learn always train the critic (reversal needs one that keeps learning; learn is named for
    it); joint as --qa-update says."""
    return cfg["qa"] in ("grl", "learn") or (cfg["qa"] == "joint" and critic_learns_in_joint(cfg))


def critic_learns_in_joint(cfg: dict) -> bool:
    """--qa-update; joint runs from before the switch existed updated their critic."""
    return cfg.get("qa_update", True)


def used_options(cfg: dict) -> tuple:
    """The guidance options this run reads: its mode's, less the critic's learning rate when the critic
    stays fixed and the warm-up's settings without a warm-up, plus the DNSMOS score choice when DNSMOS
    is the critic."""
    uses = [k for k in USES[cfg["qa"]] if (k != "qa_lr" or updates_critic(cfg))
            and (k not in WARMUP_OPTIONS or cfg.get("critic_warmup"))]
    if cfg["qa"] != "none" and cfg["qa_model"] == DNSMOS:
        uses.append("dnsmos_target")
    return tuple(uses)


def described(cfg: dict) -> str:
    """The guidance a run asks for, in its flags (for messages)."""
    fixed = cfg["qa"] == "joint" and not critic_learns_in_joint(cfg)
    text = f"--qa {cfg['qa']}" + (" --no-qa-update" if fixed else "")
    return text + (f" --qa-model {cfg['qa_model']}" if cfg["qa"] != "none" and cfg["qa_model"] else "")


def check(cfg: dict) -> None:
    """What a guided config can get wrong, refused before any work (one line each); its numbers are
    judged with every other option's (mosqa.checks.LIMITS)."""
    init = cfg.get("critic_init", "pretrained")
    if init not in CRITIC_INITS and not Path(init).is_file():
        raise MosqaError(f"--critic-init {init!r}: use {' or '.join(CRITIC_INITS)}, or a warm critic's file "
                         f"({WARM_FILE} of a run with --critic-warmup)")
    if cfg["qa"] == "none":
        return
    if cfg.get("critic_warmup") and not (cfg.get("critic_warmup_from") or cfg.get("init")):
        raise MosqaError("--critic-warmup: the critic learns from enhancers' outputs; give their checkpoints "
                         "(--critic-warmup-from) or the run this one starts from (--init)")
    if not cfg["qa_model"]:
        raise MosqaError(f"--qa {cfg['qa']} needs --qa-model (a train-qa run directory, pesq-wb, dnsmos or "
                         "intrusive)")
    if cfg["qa_model"] == INTRUSIVE and cfg["qa"] != "learn":
        raise MosqaError(f"--qa-model intrusive starts untrained and learns beside the enhancer: use it with "
                         f"--qa learn, not --qa {cfg['qa']}")
    if cfg["qa_model"] == DNSMOS:
        dnsmos_terms(cfg["dnsmos_target"])
        if updates_critic(cfg):
            raise MosqaError(f"--qa {cfg['qa']} trains its critic and DNSMOS is a fixed one; use --qa frozen "
                             "or --qa joint --no-qa-update")
        if cfg["sample_rate"] != DNSMOS_RATE or cfg["crop_seconds"] < 1.0:
            raise MosqaError(f"--qa-model dnsmos reads 16 kHz audio of at least 1 s; this run has "
                             f"--sample-rate {cfg['sample_rate']} and --crop-seconds {cfg['crop_seconds']:g}")


def dnsmos_terms(spec: str) -> list[tuple[float, str]]:
    """'0.5*sig+bak' -> [(0.5, 'sig'), (1.0, 'bak')] (train-qa's loss syntax); positive weights."""
    try:
        terms = parse_spec(spec, DNSMOS_SCORES)
    except MosqaError:
        terms = []
    if not terms or any(w <= 0 for w, _ in terms):
        raise MosqaError(f"--dnsmos-target {spec!r}: give DNSMOS scores from {', '.join(DNSMOS_SCORES)} with "
                         "positive weights joined by '+', e.g. ovrl or 0.5*sig+0.5*bak")
    return terms


class DnsmosCritic(torch.nn.Module):
    """Torch DNSMOS as a fixed critic: the weighted mean of the chosen scores on the normalised 0..1 scale.

    Training crops have one length, so a batch is scored at once; items of other lengths (a padded
    batch) are scored one by one at their own length, so padding never counts as silence.
    """

    def __init__(self, dnsmos: torch.nn.Module, terms: list[tuple[float, str]]):
        super().__init__()
        self.dnsmos, self.terms = dnsmos, terms
        self.total = sum(w for w, _ in terms)

    def forward(self, wav, lengths):
        if lengths is None or bool((lengths == wav.shape[-1]).all()):
            return self._normalised(self.dnsmos(wav))
        return torch.cat([self._normalised(self.dnsmos(wav[k : k + 1, : max(int(n), DNSMOS_RATE)]))
                          for k, n in enumerate(lengths.tolist())])

    def _normalised(self, scores: dict) -> torch.Tensor:
        return sum(w * (scores[DNSMOS_SCORES[name]] - 1.0) / 4.0 for w, name in self.terms) / self.total


def dnsmos_critic(cfg: dict, device) -> torch.nn.Module:
    """--qa-model dnsmos: mosqa.dnsmos.load_torch's differentiable DNSMOS, frozen."""
    from mosqa import dnsmos

    module = dnsmos.load_torch(personalized=False, device=device)
    return DnsmosCritic(module, dnsmos_terms(cfg["dnsmos_target"]))


def qa_critic(cfg: dict, device) -> torch.nn.Module:
    """A train-qa run directory or a shipped model's name (pesq-wb), checked against the enhancer's audio."""
    from mosqa.qa import load_qa

    spec = cfg["qa_model"]
    if Path(spec).exists():  # a path: refuse what is not a usable train-qa run before building anything
        run_dir, _ = find_checkpoint(spec)
        qa_cfg = load_run_config(run_dir)
        if qa_cfg.get("kind", "qa") != "qa":
            raise MosqaError(f"{run_dir}: this is a train-{qa_cfg['kind']} run; --qa-model needs a "
                             "train-qa run")
        try:
            FrontEnd.from_dict(qa_cfg)
        except MosqaError as exc:  # e.g. a front end this version cannot compute from a waveform
            raise MosqaError(f"{run_dir}: unusable quality-model front end ({exc})") from None
    scorer = load_qa(spec, device)  # a bare name is looked up among the shipped models
    check_qa_compatible(scorer.frontend, cfg, spec)
    return NormalisedQA(scorer)


def intrusive_critic(cfg: dict, device) -> torch.nn.Module:
    """--qa-model intrusive: mosqa.intrusive_critic's critic at the enhancer's rate, untrained."""
    from mosqa.intrusive_critic import IntrusiveCritic

    return IntrusiveCritic(cfg["sample_rate"])


# Named critics; any other --qa-model is a train-qa run directory or a shipped model's name.
CRITICS = {DNSMOS: dnsmos_critic, INTRUSIVE: intrusive_critic}


def load_critic(cfg: dict, device) -> torch.nn.Module:
    """The critic of --qa frozen|grl|joint: a module mapping (wav, lengths) to a (B,) score in 0..1."""
    check(cfg)
    return CRITICS.get(cfg["qa_model"], qa_critic)(cfg, device)


def check_qa_compatible(qa_fe, cfg: dict, run_dir) -> None:
    """The critic must read the waveform the enhancer produces; refuse what cannot work."""
    if qa_fe.sample_rate != cfg["sample_rate"]:
        raise MosqaError(
            f"{run_dir}: quality model reads {qa_fe.sample_rate} Hz audio but the enhancer "
            f"produces {cfg['sample_rate']} Hz (train one at the same --sample-rate)"
        )
    crop = int(cfg["crop_seconds"] * cfg["sample_rate"])
    if qa_fe.n_fft > crop:
        raise MosqaError(
            f"{run_dir}: quality model's n_fft {qa_fe.n_fft} is longer than a "
            f"{cfg['crop_seconds']} s training crop"
        )


def learnable(critic: torch.nn.Module) -> torch.nn.Module:
    """The part of a critic that learns: what a quality model's best.pt holds (QAScorer: the model;
    the encoder model: its head), or the intrusive critic itself. It is also what a run's checkpoint
    keeps of a learning critic (its `qa` state): the encoder a pesq-wb critic reads stays as shipped, so
    a checkpoint holds its ~100 KB head, not ~17 MB of encoder."""
    return critic.scorer.trained if isinstance(critic, NormalisedQA) else critic


def reinitialise(module: torch.nn.Module) -> None:
    """--critic-init scratch: the same architecture with fresh weights."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def save_warm(critic: torch.nn.Module, path, qa_model: str) -> None:
    """The learning part of a warmed-up critic (`learnable`: the shipped encoder model's head, not the
    encoder), with the --qa-model it belongs to."""
    save_checkpoint(path, {"qa": learnable(critic).state_dict(), "qa_model": qa_model})


def load_warm(critic: torch.nn.Module, path, qa_model: str) -> None:
    """--critic-init FILE: a critic warmed up by another run (save_warm), for the same --qa-model."""
    state = load_checkpoint(path)
    if "qa" not in state or state.get("qa_model") != qa_model:
        raise MosqaError(f"{path}: not a warm critic of --qa-model {qa_model} (it holds "
                         f"{state.get('qa_model') or 'no warm critic'}); make one with --critic-warmup")
    try:
        learnable(critic).load_state_dict(state["qa"])
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise MosqaError(f"{path}: the warm critic does not fit this run's critic ({reason})") from None


def start_critic(critic: torch.nn.Module, cfg: dict) -> None:
    """--critic-init: pretrained keeps --qa-model's weights, scratch reinitialises them, a file loads a
    warm critic."""
    init = cfg.get("critic_init", "pretrained")
    if init == "scratch":
        reinitialise(learnable(critic))
    elif init not in CRITIC_INITS:
        load_warm(critic, init, cfg["qa_model"])


def build_critic(cfg: dict, device, fresh: bool = True) -> tuple[torch.nn.Module | None,
                                                                  torch.optim.Optimizer | None]:
    """(critic, its optimiser): the critic learns in grl, learn and joint with --qa-update, stays fixed
    otherwise (no optimiser); (None, None) without guidance. A learning critic of a `fresh` run starts
    as --critic-init says (a resumed one gets its own state from last.pt)."""
    if cfg["qa"] == "none":
        return None, None
    critic = load_critic(cfg, device).to(device)
    trains = updates_critic(cfg)
    if trains and fresh:
        start_critic(critic, cfg)
    for p in critic.parameters():
        p.requires_grad_(False)
    params = list(learnable(critic).parameters()) if trains else []
    for p in params:
        p.requires_grad_(True)
    critic.eval()  # what does not learn keeps its inference behaviour (no dropout in a frozen encoder)
    learnable(critic).train(trains)
    return critic, torch.optim.Adam(params, lr=cfg["qa_lr"]) if trains else None
