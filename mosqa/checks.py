"""Checks on the paths a user gives, made before any work starts, and the output rule.

An output location that cannot be written (a folder where a file must go, a file where a folder
must go, an unwritable folder), an output that is one of the command's own inputs, and a run directory
of the wrong kind are found here, in one line naming the path, instead of as a traceback (or a lost
input) after an hour of scoring. Torch-free, so `mosqa dnsmos` can use it.

The output rule, for every command and output option: an output that resolves (after symlinks) to an
input file, list or folder is refused (`not_an_input`); an output that is not a regular file (a device
such as /dev/null, a FIFO, this process's stdout) is written into, never renamed over (`in_place`);
a link to a regular file is followed, so its target is replaced and the link kept (`replaced_file`).
`mosqa.audio.atomic_path`, which every writer uses, applies the last two.
"""

import os
import stat
from pathlib import Path

import yaml

from mosqa.errors import MosqaError

# The kinds of run, by the command that makes them (config.yaml's `kind`).
RUN_KINDS = {"qa": "train-qa", "se": "train-se"}
# Config keys only one trainer writes: how a run made before config.yaml recorded `kind` is told apart.
KIND_MARKERS = {"qa": "feature", "se": "mask_act"}


def _writable_parent(path: Path, flag: str, target: Path | None = None) -> None:
    """Every existing ancestor of `target` (default `path`) is a folder, and the nearest one is writable."""
    for parent in (target or path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise MosqaError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise MosqaError(f"{flag} {path}: folder {parent} is not writable")
            return


def standard_stream(path) -> int | None:
    """1 or 2 when `path` is this process's stdout or stderr (e.g. /dev/stdout redirected to a file),
    else None: such an output is written through the descriptor, so what is printed after it follows it
    instead of overwriting it."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    for fd in (1, 2):
        try:
            if os.path.samestat(found, os.fstat(fd)):
                return fd
        except OSError:
            continue
    return None


def in_place(path) -> bool:
    """True for an output that is written into rather than replaced: an existing device, FIFO or socket
    (or a link to one), or this process's stdout/stderr. Renaming a temporary file over one would
    replace the node itself (/dev/null would become a file) or detach the stream."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or standard_stream(path) is not None


def replaced_file(path) -> Path:
    """The file an atomic write of `path` replaces: a link's target (the link is kept), else `path`."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def output_file(path, flag: str = "--out") -> Path:
    """`path` can be written as a file: it is not a folder, and it is written in place or every folder
    above the file it replaces can exist."""
    path = Path(path)
    if path.is_dir():
        raise MosqaError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise MosqaError(f"{flag} {path}: file is not writable")
    if not in_place(path):  # a device is written into: its folder (/dev) need not be writable
        _writable_parent(path, flag, replaced_file(path))
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


def check_counts(options: dict, keys) -> None:
    """Options that count something (epochs, samples per second) are positive integers, or one line naming
    the flag: a zero reaches resampling or the epoch loop as a traceback or a silent no-op."""
    for key in keys:
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MosqaError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")


def checked_config(cfg: dict, output_dirs=("exp_dir", "cache_dir"), runs: dict | None = None,
                   inputs=()) -> dict:
    """A trainer's resolved config, returned once its output folders can be written and are none of its
    inputs (the lists and folders the keys `inputs` name, and the runs), and the runs it names (`runs`:
    key -> the kind it needs, e.g. {"qa_model": "qa"}) are of the right kind."""
    sources = [cfg[key] for key in (*inputs, *(runs or {})) if cfg.get(key)]
    for key in output_dirs:
        if cfg.get(key):
            output_dir(cfg[key], "--" + key.replace("_", "-"))
            not_an_input([cfg[key]], sources, "--" + key.replace("_", "-"))
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
    """Refuse an output that resolves (after symlinks) to an input file, list or folder, before any work:
    an input file would be overwritten while being read, an input folder would mix outputs into the
    inputs. An output written in place (a device, a FIFO) cannot destroy its node, so it may be anything."""
    sources: dict = {}
    for p in inputs:
        if Path(p).exists():
            sources.setdefault(Path(p).resolve(), p)
    for out in outputs:
        hit = sources.get(Path(out).resolve())
        if hit is None or in_place(out):
            continue
        if Path(hit).is_dir():
            raise MosqaError(f"{flag}: output {out} is the input folder {hit} (outputs would mix with the "
                             f"inputs); give another {flag}")
        raise MosqaError(f"{flag}: output {out} would overwrite the input {hit}; give another {flag}")
