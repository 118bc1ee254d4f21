"""Quality models shipped inside the package (`mosqa/pretrained/<name>/`), and the export that makes them.

A shipped model is a run directory cut to what scoring needs: config.yaml without the machine's
paths, best.pt holding the weights only (no optimiser state), so `load_qa` reads both alike, and
model.onnx, the same scorer for onnxruntime (mosqa.export). Lookup is torch-free: `mosqa predict
--engine onnx` resolves names without torch installed.
"""

import shutil
from pathlib import Path

from mosqa.errors import MosqaError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# Run-config keys that name files on the training machine: meaningless (and private) in a package.
MACHINE_KEYS = ("train", "valid", "exp_dir", "cache_dir", "name")


def names() -> list[str]:
    """The shipped models, by folder name."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/config.yaml"))


def shipped_dir(name: str) -> Path | None:
    """The folder of shipped model `name`, or None when there is no such model."""
    folder = PRETRAINED_DIR / name
    return folder if "/" not in name and (folder / "config.yaml").is_file() else None


def resolve(spec) -> Path:
    """A run directory or checkpoint path as given, else the folder of the shipped model of that name."""
    if Path(spec).exists():
        return Path(spec)
    shipped = shipped_dir(str(spec))
    if shipped is None:
        raise MosqaError(f"{spec}: no such run directory or checkpoint, nor a shipped model "
                         f"({', '.join(names()) or 'none installed'})")
    return shipped


def export(run_dir, dest, checkpoint: str = "best.pt", card: Path | None = None) -> Path:
    """Write a run's config (machine paths removed) and weights into `dest`, plus a model card if given.
    Its model.onnx is mosqa.export's (`mosqa export DEST`), which reads shipped models through here."""
    from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config, save_checkpoint, save_yaml

    run_dir, ckpt = find_checkpoint(run_dir, prefer=checkpoint)
    state = load_checkpoint(ckpt)
    if "model" not in state:
        raise MosqaError(f"{ckpt}: not a train-qa checkpoint (no model weights)")
    config = {k: v for k, v in load_run_config(run_dir).items() if k not in MACHINE_KEYS}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    save_yaml(dest / "config.yaml", config)
    save_checkpoint(dest / "best.pt", {"model": state["model"], "source_run": run_dir.name,
                                       "epoch": state.get("epoch")})
    if card is not None:
        shutil.copyfile(card, dest / "MODEL_CARD.md")
    return dest
