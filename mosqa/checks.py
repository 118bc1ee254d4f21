"""Checks on the paths a user gives, made before any work starts.

An output location that cannot be written (a folder where a file must go, a file where a folder
must go, an unwritable folder) and a run directory of the wrong kind are found here, in one line
naming the path, instead of as a traceback after an hour of scoring. Torch-free, so `mosqa dnsmos`
can use it.
"""

import os
from pathlib import Path

import yaml

from mosqa.errors import MosqaError

# The kinds of run, by the command that makes them (config.yaml's `kind`).
RUN_KINDS = {"qa": "train-qa", "se": "train-se"}
# Config keys only one trainer writes: how a run made before config.yaml recorded `kind` is told apart.
KIND_MARKERS = {"qa": "feature", "se": "mask_act"}


def _writable_parent(path: Path, flag: str) -> None:
    """Every existing ancestor of `path` is a folder, and the nearest one is writable."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise MosqaError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise MosqaError(f"{flag} {path}: folder {parent} is not writable")
            return


def output_file(path, flag: str = "--out") -> Path:
    """`path` can be written as a file: it is not a folder and every folder above it can exist."""
    path = Path(path)
    if path.is_dir():
        raise MosqaError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise MosqaError(f"{flag} {path}: file is not writable")
    _writable_parent(path, flag)
    return path


def output_dir(path, flag: str = "--out-dir") -> Path:
    """`path` can be used as an output folder: it is a folder or can be created as one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MosqaError(f"{flag} {path}: is a file, not a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise MosqaError(f"{flag} {path}: folder is not writable")
    _writable_parent(path, flag)
    return path


def checked_config(cfg: dict, output_dirs=("exp_dir", "cache_dir"), runs: dict | None = None) -> dict:
    """A trainer's resolved config, returned once its output folders can be written and the runs it
    names (`runs`: key -> the kind it needs, e.g. {"qa_model": "qa"}) are of the right kind."""
    for key in output_dirs:
        if cfg.get(key):
            output_dir(cfg[key], "--" + key.replace("_", "-"))
    for key, kind in (runs or {}).items():
        if cfg.get(key):
            require_kind(cfg[key], kind, "--" + key.replace("_", "-"))
    return cfg


def run_kind(run_dir) -> str | None:
    """'qa' or 'se' from a run's config.yaml (its `kind`, else the keys only one trainer writes); None
    when there is no readable config."""
    config = Path(run_dir) / "config.yaml"
    try:
        cfg = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict):
        return None
    if cfg.get("kind") in RUN_KINDS:
        return cfg["kind"]
    return next((kind for kind, key in KIND_MARKERS.items() if key in cfg), None)


def require_kind(path, kind: str, needed_by: str) -> None:
    """Refuse a run (directory or checkpoint file) made by the other trainer, saying what it is."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    found = run_kind(run_dir)
    if found is not None and found != kind:
        raise MosqaError(f"{path}: this is a {RUN_KINDS[found]} run; {needed_by} needs a "
                         f"{RUN_KINDS[kind]} run")


def has_checkpoint(run_dir) -> bool:
    """A run directory that finished at least one epoch (what globbing tools treat as a run)."""
    return any((Path(run_dir) / name).is_file() for name in ("best.pt", "last.pt"))


def not_an_input(outputs, inputs, flag: str = "--out-dir") -> None:
    """Refuse when an output would land on an input file: it would be overwritten while being read."""
    sources = {Path(p).resolve(): p for p in inputs}
    for out in outputs:
        hit = sources.get(Path(out).resolve())
        if hit is not None:
            raise MosqaError(f"{flag}: output {out} would overwrite the input {hit}; choose another folder")
