"""Checks on what a user gives, made before any work starts: option values, paths, the output rule.

A numeric option that is not finite or out of its range (`LIMITS`, one table for every command and
trainer config key), an output location that cannot be written (a folder where a file must go, a file
where a folder must go, an unwritable folder), an output that is one of the command's own inputs
(`OWN_FILES`), and a run directory of the wrong kind are found here, in one line naming the option or
path, instead of as a traceback (or a lost input) after an hour of scoring. Torch-free, so `mosqa
dnsmos` can use it.

The output rule, for every command and output option: an output that resolves (after symlinks) to an
input file, list or folder is refused (`not_an_input`); an output that is not a regular file (a device
such as /dev/null, a FIFO, this process's stdout) is written into, never renamed over (`in_place`);
a link to a regular file is followed, so its target is replaced and the link kept (`replaced_file`).
`mosqa.audio.atomic_path`, which every writer uses, applies the last two.
"""

import math
import os
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass
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


def writes_stdout(*outputs) -> bool:
    """True when one of `outputs` is this process's stdout (`-o /dev/stdout > scores.csv`): the
    command's tables and notes then go to stderr, so the redirected file holds the output alone."""
    return any(path is not None and standard_stream(path) == 1 for path in outputs)


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


@dataclass(frozen=True)
class Bounds:
    """Where a numeric option's value may lie: finite, within low..high (each end included unless
    `open_low`/`open_high`), and a whole number when `whole`."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    whole: bool = False

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.whole and not isinstance(value, int):  # 2.0 epochs from a YAML file reach range()
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        if self.low > -math.inf and self.high < math.inf:
            return (f"{kind} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.open_high else ']'}")
        if self.low > -math.inf:
            return f"{kind} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high < math.inf:
            return f"{kind} {'<' if self.open_high else '<='} {self.high:g}"
        return kind


COUNT = Bounds(1, whole=True)  # epochs, sizes, workers: at least one
NATURAL = Bounds(0, whole=True)  # seeds, "0 = off" counts
POSITIVE = Bounds(0, open_low=True)  # rates, widths, weights
NONNEGATIVE = Bounds(0)
SHARE = Bounds(0, 1)  # probabilities
DROPOUT = Bounds(0, 1, open_high=True)
EXPONENT = Bounds(0, 1, open_low=True)  # magnitude compression: 1 = raw
ANY = Bounds()  # any finite number (SNRs, levels)

# Every numeric option of every command, by its name (the parameter and, for the trainers, the YAML key),
# judged before any work by `check_options`: nan, inf and out-of-range values are one line naming the flag
# instead of a traceback (int(nan)), a silent no-op (0 epochs) or a run pushed the wrong way (a negative
# loss weight). One name means one thing in every command that has it.
LIMITS = {
    # shared by several commands
    "jobs": COUNT, "batch_size": COUNT, "epochs": COUNT, "seed": NATURAL, "threads": NATURAL,
    "num_workers": NATURAL, "patience": NATURAL, "lr": POSITIVE, "weight_decay": NONNEGATIVE,
    "grad_clip": NONNEGATIVE, "clip_grad": NONNEGATIVE, "sample_rate": COUNT, "n_fft": COUNT, "hop": COUNT,
    "compress": EXPONENT,
    # predict, enhance: no chunk shorter than the shortest clip any command reads (audio.MIN_SECONDS)
    "chunk_seconds": Bounds(0.5), "overlap_seconds": NONNEGATIVE,
    # simulate
    "per_utt": COUNT, "max_utts": COUNT, "voice_perturb": Bounds(0, 0.5, open_high=True),
    "synthetic_rooms": SHARE, "tandem_prob": SHARE, "clean_share": SHARE, "call_share": SHARE,
    "recording_chain": SHARE, "fault_share": SHARE,
    # prepare-list (its own checks say why --min-dur and --silence-db may only tighten)
    "bin_width": POSITIVE, "min_dur": NONNEGATIVE, "max_dur": POSITIVE, "silence_db": Bounds(high=0),
    # train-qa
    "lr_factor": Bounds(0, 1, open_low=True, open_high=True), "lr_patience": NATURAL, "bucket_batches": COUNT,
    "win": COUNT, "n_mels": COUNT, "level_norm": Bounds(high=0), "C": COUNT, "lstm_hidden": COUNT,
    "trans": COUNT, "conv_layers": COUNT, "conv_kernel": COUNT, "prepare_layers": NATURAL,
    "prepare_kernel": COUNT, "prepare_dilation": COUNT, "attn_heads": COUNT, "attn_dropout": DROPOUT,
    "dropout": DROPOUT, "local_mask": NATURAL, "time_pool": COUNT, "head_hidden": NATURAL,
    "step": Bounds(0, 4, open_low=True), "y_max": Bounds(1, 5), "edm_sigma": POSITIVE,
    # train-se
    "conv_channels": COUNT, "hidden": COUNT, "layers": COUNT, "blocks": COUNT, "intra_hidden": COUNT,
    "inter_hidden": COUNT, "snr_min": ANY, "snr_max": ANY, "crop_seconds": POSITIVE,
    "valid_crop_seconds": NONNEGATIVE, "epoch_items": COUNT, "valid_items": COUNT, "valid_seed": NATURAL,
    "spec_compress": EXPONENT, "spec_weight": NONNEGATIVE, "qa_every": COUNT, "qa_lr": POSITIVE,
    "replay_size": NATURAL, "pesq_workers": NATURAL, "steps_per_epoch": COUNT, "keep_every": NATURAL,
    "critic_warmup": NATURAL, "critic_warmup_lcc": Bounds(0, 1, open_low=True),  # an LCC worth reaching
    # a quality term pushes the enhancer towards a higher score: a negative weight pushes it down, and
    # 0 is no guidance (--qa none says so)
    "qa_weight": POSITIVE, "grl_lambda": POSITIVE,
}


def check_options(values: dict) -> None:
    """Every value whose name LIMITS knows (None = not given) lies within its bounds, or one line naming
    the flag, what it must be and what it got."""
    for name, value in values.items():
        bounds = LIMITS.get(name)
        if bounds is not None and value is not None and not bounds.holds(value):
            raise MosqaError(f"--{name.replace('_', '-')} must be {bounds}, got {value!r}")


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


# A run is more than the path given: its config and checkpoints are what a command reads of it, and
# what `--resume` and every later `predict` need.
RUN_FILES = ("config.yaml", "best.pt", "last.pt")

# What each command writes and reads, by option name (None = not given). Its outputs are judged against
# its inputs by `refuse_own_inputs` before any work; a command adds the files it finds inside its inputs
# (a folder's audio, a list's entries) itself, once it has read them.
OWN_FILES = {
    "simulate": (("out_dir",), ("clean_dir", "noise_dir", "rir_dir", "music_dir")),
    "prepare-list": (("out_dir",), ("lists",)),
    "train-qa": (("exp_dir", "cache_dir"), ("config", "resume", "train", "valid")),
    "eval-qa": (("out_dir", "table", "cache_dir"), ("runs", "list_path")),
    "predict": (("out",), ("paths", "list_files", "model")),
    "export": (("out",), ("model",)),
    "dnsmos": (("out", "summary_json"), ("paths", "list_files", "model_dir", "sigmos_model")),
    "train-se": (("exp_dir",), ("config", "resume", "init", "train", "valid", "clean", "noise", "rir",
                               "valid_clean", "valid_noise", "qa_model", "train_list", "valid_list")),
    "enhance": (("out_dir",), ("paths",)),
}


def run_files(path) -> list[Path]:
    """`path` and, when it is a run (a directory with config.yaml, or a checkpoint beside one) or a
    shipped model's name, the run's own files."""
    from mosqa.pretrained import shipped_dir

    path = Path(path) if Path(path).exists() else shipped_dir(str(path)) or Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.yaml").is_file():
        return [path]
    return [path, *(folder / name for name in RUN_FILES)]


def refuse_own_inputs(command: str, options: dict) -> None:
    """The output rule at the command line: no output option of `command` names one of its inputs (a
    file, list or folder given, or a file of a run given), refused before any work by `not_an_input`."""
    outputs, inputs = OWN_FILES[command]
    given = []
    for name in inputs:
        value = options.get(name)
        for path in value if isinstance(value, list | tuple) else [value]:
            if path is not None:
                given += run_files(path)
    for name in outputs:
        if options.get(name) is not None:
            not_an_input([options[name]], given, "--" + name.replace("_", "-"))


def run_folder(path) -> Path:
    """The run directory of `path`, a run directory or a checkpoint in one; one line naming `path` when
    no config.yaml says it is a mosqa model or run (a stray .pt or text file, an unrelated folder)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.yaml").is_file():
        where = "in" if path.is_dir() else "beside"
        raise MosqaError(f"{path}: not a mosqa model or run (no config.yaml {where} it); give a train-qa or "
                         "train-se run directory, a checkpoint in one, or a shipped model's name")
    return folder


@contextmanager
def made_folder(path, keep=None):
    """Create folder `path` (and its missing parents) for the block; when the block fails, remove every
    folder it created, so a failed command leaves nothing behind, unless `keep()` says something there
    is worth keeping (default: anything at all, e.g. another writer's file). A folder that already
    existed is never removed."""
    path = Path(path)
    created = [p for p in (path.absolute(), *path.absolute().parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        yield path
    except BaseException:
        holds = keep or (lambda: path.is_dir() and any(path.iterdir()))
        if created and not holds():
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
