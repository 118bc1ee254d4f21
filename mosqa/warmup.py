"""`train-se --qa learn --critic-warmup STEPS`: the learning critic learns the true PESQ-WB of a ladder of
enhancers' outputs before guidance starts, so that it ranks the enhancer's outputs from the first step.

Why: a cold critic guides the enhancer with its first guesses. Issue 20's intrusive critic ranked the
fine-tune's fresh outputs at LCC 0.09 in its first epoch and 0.44 in its sixth, and its run ended behind
the spectral-only control. The ladder (`--critic-warmup-from`: checkpoints from early poor enhancers to
the one being fine-tuned; by default the --init run's best.pt alone) spans the quality guidance starts
from and moves through.

Each step is --qa learn's own critic update (mosqa.guidance.Learner.lesson, the same PESQ workers,
replay buffer and optimiser step) on one rung's outputs for a training batch, with the batch's clean and
noisy items; only the enhancer being trained stays still. The held-out LCC (every rung's outputs on the
run's validation mixtures, their true PESQ computed once) is measured before and CHECKS times during the
warm-up, which stops once it reaches --critic-warmup-lcc or the steps run out. The run keeps the critic's
learning part as critic_warm.pt (`--critic-init critic_warm.pt` starts another run, e.g. another seed,
from it, skipping its own warm-up) and the LCC and error before and after in critic_warm.yaml.
"""

import math
from pathlib import Path

import torch

from mosqa.errors import MosqaError
from mosqa.guidance import CRITIC_INITS, WARM_FILE, agreement, learnable, pending_pesq, save_warm
from mosqa.progress import progress_bar
from mosqa.runs import autocast, find_checkpoint, optimiser_step, save_yaml

CHECKS = 10  # held-out LCC measurements, one after each tenth of the steps (and one before the first)
SUMMARY = "critic_warm.yaml"


def wanted(cfg: dict) -> bool:
    """--critic-warmup STEPS, unless --critic-init gives a critic that is already warm."""
    return bool(cfg.get("critic_warmup")) and cfg.get("critic_init", "pretrained") in CRITIC_INITS


def ladder_files(cfg: dict) -> list[Path]:
    """--critic-warmup-from's checkpoints in the order given (a folder: every *.pt in it, by name), or
    the --init run's best.pt."""
    if not cfg.get("critic_warmup_from"):
        return [find_checkpoint(cfg["init"])[1]]
    files = []
    for part in cfg["critic_warmup_from"].split(","):
        path = Path(part)
        found = sorted(path.glob("*.pt")) if path.is_dir() else [path] if path.is_file() else []
        if not found:
            raise MosqaError(f"--critic-warmup-from {path}: no such checkpoint, nor a folder holding *.pt")
        files += found
    return files


class HeldOut:
    """Every rung's outputs on the held-out mixtures, with their true PESQ (computed once)."""

    def __init__(self, rungs, loader, workers, sr: int, device):
        self.items, pending = [], []
        with torch.no_grad():
            for noisy, clean, lengths in loader:
                noisy, clean, lengths = noisy.to(device), clean.to(device), lengths.to(device)
                for rung in rungs:
                    out = rung.run(noisy, lengths)["wav"]
                    self.items.append((out, lengths, clean))
                    pending.append(pending_pesq(clean, out, lengths, sr, workers))
        self.targets = torch.cat([scores() for scores in pending]).tolist()

    def agreement(self, critic) -> dict:
        """The critic's LCC and error on these outputs (guidance.agreement)."""
        part = learnable(critic)
        part.eval()  # measuring must not move the critic (spectral norm's power iteration, dropout)
        try:
            with torch.no_grad():
                q = torch.cat([critic(*item) for item in self.items]).tolist()
        finally:
            part.train()
        return agreement(zip(q, self.targets, strict=True))


def warm_up(enh, batches, held_out, run) -> dict:
    """Teach `enh`'s learning critic on the outputs of `enh.ladder` (checkpoint -> enhancer) for the
    training `batches` (an endless iterator) until its LCC on the `held_out` loader's mixtures reaches
    the target or --critic-warmup steps are done; save it in `run`. Returns critic_warm.yaml's summary."""
    cfg, dist = enh.cfg, enh.dist
    steps, target = cfg["critic_warmup"], cfg["critic_warmup_lcc"]
    rungs = list(enh.ladder.values())
    outputs = HeldOut(rungs, held_out, enh.learner.workers, cfg["sample_rate"], dist.device) \
        if dist.is_main else None

    def measure() -> dict:
        return dist.broadcast_object(outputs.agreement(enh.critic) if dist.is_main else None)

    before = after = measure()
    done, every = 0, math.ceil(steps / CHECKS)
    with progress_bar(enh.console, dist.is_main) as prog:
        task = prog.add_task("critic warm-up", total=steps)
        while done < steps and not after.get("critic_lcc", math.nan) >= target:
            for _ in range(min(every, steps - done)):
                noisy, clean, lengths = (t.to(dist.device) for t in next(batches))
                _lesson(enh, rungs[done % len(rungs)], noisy, clean, lengths)
                done += 1
                prog.advance(task)
            after = measure()
    enh.learner.epoch_figures()  # the warm-up's own watch: metrics.csv's critic_lcc is guidance's alone
    reached = bool(after.get("critic_lcc", math.nan) >= target)
    summary = {"qa_model": cfg["qa_model"], "steps": done, "target_lcc": target, "reached": reached,
               "held_out": len(held_out.dataset) * len(rungs)}
    summary |= {f"{k}_{when}": figures.get(f"critic_{k}", math.nan) for when, figures in
                (("before", before), ("after", after)) for k in ("lcc", "mae")}
    summary["ladder"] = list(enh.ladder)
    if dist.is_main:
        save_warm(enh.critic, run.path / WARM_FILE, cfg["qa_model"])
        save_yaml(run.path / SUMMARY, summary)
    run.log(f"critic warm-up: held-out LCC {summary['lcc_before']:.3f} -> {summary['lcc_after']:.3f}, MAE "
            f"{summary['mae_before']:.3f} -> {summary['mae_after']:.3f} PESQ after {done} steps on "
            f"{len(rungs)} enhancers' outputs (target {target:g} {'' if reached else 'not '}reached; "
            f"{summary['held_out']} held-out outputs); the warm critic is {WARM_FILE}")
    return summary


def _lesson(enh, rung, noisy, clean, lengths) -> None:
    """One --qa learn critic update on `rung`'s outputs for a training batch."""
    cfg = enh.cfg
    with torch.no_grad(), autocast(noisy.device, cfg["amp"]):
        out = rung.run(noisy, lengths)["wav"].float()  # the critic's own precision outside autocast
    targets = enh.learner.pending(clean, out, noisy, lengths, cfg["sample_rate"])
    with torch.no_grad():
        q_out = enh.critic(out, lengths, clean)  # while the workers score
    with autocast(noisy.device, cfg["amp"]):
        loss = enh.learner.lesson(enh.net_critic, out, clean, noisy, lengths, q_out, targets)
    optimiser_step(loss, enh.scaler, [(enh.critic_optimizer, learnable(enh.critic).parameters())],
                   cfg["grad_clip"])
