"""Issue 12's matrix: every bad input and output path, over every command.

Each case runs one command line and asserts its exit code, that no traceback is shown, that one
`error:` line names the offending file (and list line), and that nothing on disk changed: no
partial output, no stale run directory, no input touched (caches aside).
"""

import csv
import functools
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, speech
from typer.testing import CliRunner

from cli.main import app
from mosqa.audio import find_audio
from mosqa.errors import MosqaError
from mosqa.lists import read_list, shard


def make_qa_run(run_dir: Path) -> None:
    """A train-qa run as older versions wrote it (no `kind` key): untrained qualitynet, config + best.pt."""
    from mosqa.frontend import FrontEnd
    from mosqa.qa import scorer_from_config
    from mosqa.runs import save_checkpoint, save_yaml

    torch.manual_seed(0)
    scorer = scorer_from_config({"arch": "qualitynet", "lstm_hidden": 8, **FrontEnd().to_dict()})
    run_dir.mkdir(parents=True)
    save_yaml(run_dir / "config.yaml", scorer.config)
    save_checkpoint(run_dir / "best.pt", {"model": scorer.model.state_dict(), "epoch": 1})


def make_se_run(run_dir: Path) -> None:
    """A train-se run holding the identity dpcrn (mask = 1)."""
    from mosqa.runs import save_checkpoint, save_yaml
    from mosqa.se_models import build_se_model
    from mosqa.train_se import DEFAULTS

    cfg = DEFAULTS | {"arch": "dpcrn", "identity_init": True}
    run_dir.mkdir(parents=True)
    save_yaml(run_dir / "config.yaml", cfg)
    save_checkpoint(run_dir / "best.pt", {"model": build_se_model(cfg).state_dict(), "epoch": 1})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("bad")
    (w / "file.txt").write_text("a regular file\n")
    (w / "adir").mkdir()
    (w / "audio").mkdir()
    for i in range(3):
        sf.write(w / "audio" / f"clip{i}.wav", speech(1.0, 120 + 40 * i), SR)
    (w / "bad").mkdir()
    sf.write(w / "bad" / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(w / "bad" / "short.wav", speech(0.2, 150), SR)
    (w / "bad" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk")
    sf.write(w / "bad" / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    (w / "qa.list").write_text("path,score,condition\naudio/clip0.wav,1.5,a\naudio/clip1.wav,3.0,b\n"
                               "audio/clip2.wav,4.5,a\n")
    (w / "pairs.list").write_text("audio/clip0.wav,audio/clip1.wav\naudio/clip1.wav,audio/clip2.wav\n")
    for bad in ("silent", "short", "corrupt", "nan"):
        (w / f"{bad}.list").write_text(f"audio/clip0.wav,3.0\nbad/{bad}.wav,2.0\naudio/clip1.wav,4.0\n")
        (w / f"{bad}_paths.list").write_text(f"audio/clip0.wav\nbad/{bad}.wav\n")
    (w / "silent_pairs.list").write_text("audio/clip0.wav,audio/clip1.wav\naudio/clip1.wav,bad/silent.wav\n")
    (w / "badscore.list").write_text("audio/clip0.wav,3.0\naudio/clip1.wav,4.0\naudio/clip2.wav,7.5\n")
    (w / "missing.list").write_text("audio/clip0.wav,3.0\naudio/nope.wav,2.0\n")
    make_qa_run(w / "runs" / "qa")
    make_se_run(w / "runs" / "se")
    for kind in ("qa", "se"):  # a config that loads, a checkpoint that does not
        (w / "runs" / f"broken_{kind}").mkdir()
        shutil.copy(w / "runs" / kind / "config.yaml", w / "runs" / f"broken_{kind}" / "config.yaml")
        (w / "runs" / f"broken_{kind}" / "best.pt").write_bytes(b"PK\x03\x04 not a zip archive")
    (w / "runs" / "failed").mkdir()  # what a run that died before its first epoch left behind
    shutil.copy(w / "runs" / "qa" / "config.yaml", w / "runs" / "failed" / "config.yaml")
    clean = w / "clean_with_bad" / "spk1"
    clean.mkdir(parents=True)
    sf.write(clean / "good.wav", speech(1.5, 150), SR)
    sf.write(clean / "quiet.wav", np.zeros(SR, np.float32), SR)
    # Outputs that are inputs: a list named as prepare-list names its outputs, a flac alone in its
    # folder (enhance would write a .wav beside it), a path-only list, a link to an input clip.
    shutil.copy(w / "qa.list", w / "wav_train_qn.list")
    (w / "flac").mkdir()
    sf.write(w / "flac" / "clip.flac", speech(1.0, 150), SR)
    (w / "clips.list").write_text("audio/clip0.wav\naudio/clip1.wav\n")
    os.symlink(w / "audio" / "clip1.wav", w / "clip1_link.wav")
    # A run's own files (issue 33): one that was resumed has a last.pt beside its best.pt; the configs a
    # trainer reads; a stray checkpoint that no config.yaml sits beside.
    shutil.copy(w / "runs" / "qa" / "best.pt", w / "runs" / "qa" / "last.pt")
    (w / "qa.yaml").write_text("arch: qualitynet\n")
    (w / "se.yaml").write_text("arch: lstm\n")
    (w / "random.pt").write_bytes(bytes(range(256)) * 8)
    return w


CACHES = {".cache", ".input_metrics"}  # features and the noisy input's scores, shared by every run


def snapshot(root: Path) -> dict:
    """path -> content hash of every file below `root`, caches excepted."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not CACHES & set(p.parts)}


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture
def colour(monkeypatch):
    """Colour forced as on a terminal (rich and Typer colour whatever they print), animation off (no
    progress-bar fragments): an escape code in an error line then shows up in the captured output."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "0")


def error_line(result) -> str:
    """The one `error:` line of a refused command: exit status 2, no traceback, plain text."""
    out = result.output
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error:"), out
    assert "\x1b" not in errors[0], repr(errors[0])  # issue 32: errors stay plain
    return errors[0]


QA_TINY = ["--arch", "qualitynet", "--lstm-hidden", "8", "--batch-size", "2", "--epochs", "1",
           "--device", "cpu", "--threads", "1"]
SE_TINY = ["--arch", "lstm", "--hidden", "8", "--conv-channels", "8", "--layers", "1", "--epochs", "1",
           "--batch-size", "2", "--crop-seconds", "0.5", "--no-dnsmos", "--device", "cpu", "--threads", "1"]


def eval_qa(run: str, test_list: str, *extra) -> list:
    return ["eval-qa", "{W}/runs/" + run, "--list", "{W}/" + test_list, "--device", "cpu", *extra]


def train_qa(train: str, *extra) -> list:
    return ["train-qa", "--train", "{W}/" + train, "--valid", "{W}/qa.list", *QA_TINY, *extra]


def train_se(train: str, *extra) -> list:
    return ["train-se", "--train", "{W}/" + train, "--valid", "{W}/pairs.list", *SE_TINY, *extra]


def enhance(run: str, *inputs_and_options) -> list:
    return ["enhance", "{W}/runs/" + run, *inputs_and_options, "--device", "cpu"]


CLIP, EV, ENH, EXP = "{W}/audio/clip0.wav", ["--out-dir", "{W}/ev"], ["--out-dir", "{W}/enh"], "{W}/exp"
UNDER_FILE = "{W}/file.txt/x"
DNSMOS_FAST = ["--no-p808", "--jobs", "1", "--device", "cpu"]


def case(name: str, args: list, fragments: list):
    """One row: a command line ({W} is the work folder) and what its one error line must name."""
    return pytest.param(args, fragments, id=name)


CASES = [
    # ---- output locations, checked before any work
    case("simulate-out-under-file", ["simulate", "--builtin", "--out-dir", UNDER_FILE], ["file.txt"]),
    case("simulate-out-is-file", ["simulate", "--builtin", "--out-dir", "{W}/file.txt"],
         ["file.txt", "not a folder"]),
    case("prepare-out-under-file", ["prepare-list", "{W}/qa.list", "--out-dir", UNDER_FILE], ["file.txt"]),
    case("prepare-out-is-file", ["prepare-list", "{W}/qa.list", "--out-dir", "{W}/file.txt"],
         ["file.txt", "not a folder"]),
    case("train-qa-exp-under-file", train_qa("qa.list", "--exp-dir", UNDER_FILE), ["--exp-dir", "file.txt"]),
    case("train-qa-cache-under-file", train_qa("qa.list", "--exp-dir", EXP, "--cache-dir", UNDER_FILE),
         ["--cache-dir", "file.txt"]),
    case("eval-qa-out-under-file", eval_qa("qa", "qa.list", "--out-dir", UNDER_FILE),
         ["--out-dir", "file.txt"]),
    case("eval-qa-table-under-file", eval_qa("qa", "qa.list", *EV, "--table", UNDER_FILE),
         ["--table", "file.txt"]),
    case("eval-qa-table-is-folder", eval_qa("qa", "qa.list", *EV, "--table", "{W}/adir"),
         ["--table", "adir", "folder"]),
    case("train-se-exp-under-file", train_se("pairs.list", "--exp-dir", UNDER_FILE),
         ["--exp-dir", "file.txt"]),
    case("enhance-out-under-file", enhance("se", CLIP, "--out-dir", UNDER_FILE), ["--out-dir", "file.txt"]),
    case("enhance-out-is-file", enhance("se", CLIP, "--out-dir", "{W}/file.txt"),
         ["--out-dir", "file.txt", "not a folder"]),
    case("enhance-out-is-input-folder", enhance("se", "{W}/audio", "--out-dir", "{W}/audio"),
         ["--out-dir", "audio", "is the input folder"]),
    case("enhance-list-out-is-input-folder",
         enhance("se", "{W}/corrupt_paths.list", "--out-dir", "{W}/audio"),
         ["overwrite", "clip0.wav"]),
    case("enhance-compare-out-under-file", ["enhance", "--compare", "{W}/runs/se", "--out-dir", UNDER_FILE],
         ["--out-dir", "file.txt"]),
    case("dnsmos-out-under-file", ["dnsmos", CLIP, "--out", UNDER_FILE], ["--out", "file.txt"]),
    case("dnsmos-out-is-folder", ["dnsmos", CLIP, "--out", "{W}/adir"], ["--out", "adir", "is a folder"]),
    case("dnsmos-summary-under-file", ["dnsmos", CLIP, "--out", "{W}/d.csv", "--summary-json", UNDER_FILE],
         ["--summary-json", "file.txt"]),
    # ---- one command given another command's run, or a broken one
    case("eval-qa-given-se-run", eval_qa("se", "qa.list"),
         ["runs/se", "train-se run", "eval-qa needs a train-qa"]),
    case("train-se-qa-model-is-se-run",
         train_se("pairs.list", "--qa", "frozen", "--qa-model", "{W}/runs/se", "--exp-dir", EXP),
         ["runs/se", "train-se run", "--qa-model needs a train-qa run"]),
    case("enhance-given-qa-run", enhance("qa", CLIP, *ENH),
         ["runs/qa", "train-qa run", "enhance needs a train-se"]),
    case("enhance-compare-given-qa-run", ["enhance", "--compare", "{W}/runs/se", "{W}/runs/qa"],
         ["runs/qa", "train-qa run", "enhance --compare needs a train-se"]),
    case("eval-qa-corrupt-checkpoint", eval_qa("broken_qa", "qa.list", *EV),
         ["broken_qa/best.pt", "corrupt"]),
    case("enhance-corrupt-checkpoint", enhance("broken_se", CLIP, *ENH), ["broken_se/best.pt", "corrupt"]),
    case("eval-qa-failed-run", eval_qa("failed", "qa.list"), ["runs/failed", "no best.pt"]),
    case("eval-qa-glob-with-broken-run", [*eval_qa("qa", "qa.list", *EV), "{W}/runs/broken_qa"],
         ["broken_qa/best.pt"]),
    case("train-se-zero-epochs", train_se("pairs.list", "--epochs", "0", "--exp-dir", EXP), ["--epochs"]),
    # ---- audio: one decision everywhere, list:line wherever a list is involved
    case("prepare-silent", ["prepare-list", "{W}/silent.list", "--out-dir", "{W}/p"],
         ["silent.list:2", "silent.wav", "silent"]),
    case("prepare-short", ["prepare-list", "{W}/short.list", "--out-dir", "{W}/p"],
         ["short.list:2", "short.wav", "duration 0.20 s"]),
    case("train-qa-silent", train_qa("silent.list", "--exp-dir", EXP),
         ["silent.list:2", "silent.wav", "silent"]),
    case("train-qa-corrupt", train_qa("corrupt.list", "--exp-dir", EXP),
         ["corrupt.list:2", "corrupt.wav", "cannot decode"]),
    case("eval-qa-silent", eval_qa("qa", "silent.list", *EV), ["silent.list:2", "silent.wav", "silent"]),
    case("eval-qa-short", eval_qa("qa", "short.list", *EV),
         ["short.list:2", "short.wav", "shorter than 0.5 s"]),
    case("eval-qa-corrupt", eval_qa("qa", "corrupt.list", *EV),
         ["corrupt.list:2", "corrupt.wav", "cannot decode"]),
    case("eval-qa-nan", eval_qa("qa", "nan.list", *EV), ["nan.list:2", "nan.wav", "NaN"]),
    case("eval-qa-missing-file", eval_qa("qa", "missing.list", *EV), ["missing.list:2", "nope.wav"]),
    case("train-se-silent-pair", train_se("silent_pairs.list", "--exp-dir", EXP),
         ["silent_pairs.list:2", "silent.wav"]),
    case("enhance-corrupt-in-list", enhance("se", "{W}/corrupt_paths.list", *ENH),
         ["corrupt_paths.list:2", "corrupt.wav"]),
    case("enhance-nan-in-list", enhance("se", "{W}/nan_paths.list", *ENH), ["nan_paths.list:2", "nan.wav"]),
    case("enhance-missing-input", enhance("se", "{W}/audio/nope.wav", *ENH), ["nope.wav"]),
    case("dnsmos-missing-list", ["dnsmos", "--list", "{W}/nope.list", "--out", "{W}/d.csv"], ["nope.list"]),
    # ---- lists and options
    case("eval-qa-bad-score", eval_qa("qa", "badscore.list", *EV), ["badscore.list:3", "7.5"]),
    case("prepare-looser-than-train-qa",
         ["prepare-list", "{W}/qa.list", "--out-dir", "{W}/p", "--min-dur", "0.1"],
         ["--min-dur 0.1", "can only be tightened"]),
    case("prepare-bad-score", ["prepare-list", "{W}/badscore.list", "--out-dir", "{W}/p"],
         ["badscore.list:3", "7.5"]),
    case("dnsmos-bad-shard", ["dnsmos", "{W}/audio", "--out", "{W}/d.csv", "--shard", "4/3"], ["--shard"]),
    case("enhance-bad-shard", enhance("se", "{W}/audio", *ENH, "--shard", "x"), ["--shard"]),
    case("train-qa-sample-rate-0", train_qa("qa.list", "--sample-rate", "0", "--exp-dir", EXP),
         ["--sample-rate", "whole number >= 1", "got 0"]),
    case("train-se-sample-rate-0", train_se("pairs.list", "--sample-rate", "0", "--exp-dir", EXP),
         ["--sample-rate", "whole number >= 1", "got 0"]),
    case("predict-list-is-a-folder", ["predict", "--list", "{W}/audio", "-o", "{W}/p.csv"],
         ["audio", "is a folder"]),
    case("dnsmos-list-is-a-folder", ["dnsmos", "--list", "{W}/audio", "-o", "{W}/d.csv"],
         ["audio", "is a folder"]),
    case("eval-qa-list-is-a-folder", eval_qa("qa", "audio", *EV), ["audio", "is a folder"]),
    # ---- outputs that resolve to an input (issue 22): refused before any work, every input unchanged
    case("predict-out-is-the-audio", ["predict", "{W}/flac/clip.flac", "-o", "{W}/flac/clip.flac"],
         ["--out", "clip.flac", "would overwrite the input"]),
    case("predict-out-is-the-list", ["predict", "--list", "{W}/clips.list", "-o", "{W}/clips.list"],
         ["--out", "clips.list", "would overwrite the input"]),
    case("predict-out-is-a-file-of-an-input-folder", ["predict", "{W}/audio", "-o", "{W}/audio/clip2.wav"],
         ["--out", "clip2.wav", "would overwrite the input"]),
    case("predict-out-links-to-an-input", ["predict", "--list", "{W}/clips.list", "-o", "{W}/clip1_link.wav"],
         ["--out", "clip1_link.wav", "would overwrite the input", "clip1.wav"]),
    case("dnsmos-out-is-the-audio", ["dnsmos", CLIP, "-o", CLIP], ["--out", "clip0.wav", "would overwrite"]),
    case("dnsmos-out-is-the-list", ["dnsmos", "--list", "{W}/clips.list", "-o", "{W}/clips.list"],
         ["--out", "clips.list", "would overwrite"]),
    case("dnsmos-summary-is-the-list",
         ["dnsmos", "--list", "{W}/clips.list", "-o", "{W}/d.csv", "--summary-json", "{W}/clips.list"],
         ["--summary-json", "clips.list", "would overwrite"]),
    case("prepare-list-over-its-own-list", ["prepare-list", "{W}/wav_train_qn.list", "--out-dir", "{W}"],
         ["--out-dir", "wav_train_qn.list", "would overwrite the input"]),
    case("simulate-into-its-clean-folder",
         ["simulate", "{W}/clean_with_bad", "--out-dir", "{W}/clean_with_bad", "--no-codecs"],
         ["--out-dir", "clean_with_bad", "is the input folder"]),
    case("eval-qa-table-is-the-list", eval_qa("qa", "qa.list", *EV, "--table", "{W}/qa.list"),
         ["--table", "qa.list", "would overwrite the input"]),
    case("eval-qa-table-is-a-clip", eval_qa("qa", "qa.list", *EV, "--table", "{W}/audio/clip2.wav"),
         ["--table", "clip2.wav", "would overwrite the input"]),
    case("eval-qa-out-is-the-run", eval_qa("qa", "qa.list", "--out-dir", "{W}/runs/qa"),
         ["--out-dir", "runs/qa", "is the input folder"]),
    case("enhance-into-its-input-folder", enhance("se", "{W}/flac", "--out-dir", "{W}/flac"),
         ["--out-dir", "flac", "is the input folder"]),
    case("enhance-compare-into-a-run", ["enhance", "--compare", "{W}/runs/se", "--out-dir", "{W}/runs/se"],
         ["--out-dir", "runs/se", "is the input folder"]),
    case("train-se-exp-is-its-clean-folder",
         ["train-se", "--clean", "{W}/audio", "--noise", "{W}/audio", "--valid", "{W}/pairs.list", *SE_TINY,
          "--exp-dir", "{W}/audio"], ["--exp-dir", "audio", "is the input folder"]),
    # ---- issue 33: no command destroys its own run, and every option value is judged before work
    case("export-over-its-best-checkpoint", ["export", "{W}/runs/qa", "-o", "{W}/runs/qa/best.pt"],
         ["--out", "best.pt", "would overwrite the input"]),
    case("export-over-its-last-checkpoint", ["export", "{W}/runs/qa", "-o", "{W}/runs/qa/last.pt"],
         ["--out", "last.pt", "would overwrite the input"]),
    case("export-checkpoint-over-its-config",
         ["export", "{W}/runs/qa/best.pt", "-o", "{W}/runs/qa/config.yaml"],
         ["--out", "config.yaml", "would overwrite the input"]),
    case("predict-chunk-seconds-nan", ["predict", CLIP, "-o", "{W}/p.csv", "--chunk-seconds", "nan"],
         ["--chunk-seconds", "got nan"]),
    case("predict-chunk-seconds-inf", ["predict", CLIP, "-o", "{W}/p.csv", "--chunk-seconds", "inf"],
         ["--chunk-seconds", "got inf"]),
    case("enhance-chunk-seconds-nan", enhance("se", CLIP, *ENH, "--chunk-seconds", "nan"),
         ["--chunk-seconds", "got nan"]),
    case("train-se-negative-qa-weight",
         train_se("pairs.list", "--qa", "frozen", "--qa-model", "{W}/runs/qa", "--qa-weight", "-1",
                  "--exp-dir", EXP), ["--qa-weight", "> 0", "got -1"]),
    case("train-se-nan-qa-weight",
         train_se("pairs.list", "--qa", "frozen", "--qa-model", "{W}/runs/qa", "--qa-weight", "nan",
                  "--exp-dir", EXP), ["--qa-weight", "got nan"]),
    case("predict-model-is-a-stray-checkpoint", ["predict", CLIP, "-m", "{W}/random.pt", "-o", "{W}/p.csv"],
         ["random.pt", "not a mosqa model or run"]),
    case("train-se-qa-model-is-a-text-file",
         train_se("pairs.list", "--qa", "frozen", "--qa-model", "{W}/file.txt", "--exp-dir", EXP),
         ["file.txt", "not a mosqa model or run"]),
    case("train-se-qa-model-is-a-stray-checkpoint",
         train_se("pairs.list", "--qa", "frozen", "--qa-model", "{W}/random.pt", "--exp-dir", EXP),
         ["random.pt", "not a mosqa model or run"]),
    case("eval-qa-given-a-stray-checkpoint", ["eval-qa", "{W}/random.pt", "--list", "{W}/qa.list"],
         ["random.pt", "not a mosqa model or run"]),
    case("enhance-given-a-text-file", ["enhance", "{W}/file.txt", CLIP, *ENH],
         ["file.txt", "not a mosqa model or run"]),
    case("predict-jobs-typed-as-text", ["predict", CLIP, "-o", "{W}/p.csv", "--jobs", "two"],
         ["--jobs", "predict --help"]),
]


@pytest.mark.parametrize("args, fragments", CASES)
def test_bad_input_matrix(work, args, fragments, colour):
    before = snapshot(work)
    error = error_line(invoke([a.format(W=work) for a in args]))
    for fragment in fragments:
        assert fragment in error, error
    assert snapshot(work) == before, "the failed command changed files on disk"


def test_simulate_names_skipped_clean_files(work, tmp_path):
    result = invoke(["simulate", work / "clean_with_bad", "--out-dir", tmp_path / "sim", "--per-utt", "1",
                     "--no-codecs", "--jobs", "1"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "quiet.wav" in result.output


# ---------------------------------------------------------------- inputs are never overwritten


def test_enhance_into_the_input_folder_leaves_every_input_byte_identical(work, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(work / "audio", folder)
    sf.write(folder / "other.flac", speech(1.0, 150), SR)
    (folder / "files.list").write_text("clip0.wav\nother.flac\n")
    before = snapshot(folder)
    for inputs in ([folder], [folder / "clip1.wav"], [folder / "files.list"]):
        result = invoke(["enhance", work / "runs" / "se", *inputs, "--out-dir", folder, "--device", "cpu"])
        refused = ("is the input folder" if inputs == [folder] else "would overwrite the input")
        assert result.exit_code == 2 and refused in result.output, result.output
        assert snapshot(folder) == before
    # A flac becomes a .wav beside it: no input is touched, so that is allowed.
    result = invoke(["enhance", work / "runs" / "se", folder / "other.flac", "--out-dir", folder, "--device",
                     "cpu"])
    assert result.exit_code == 0, result.output
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"other.wav"}


# ---------------------------------------------------------------- outputs that are devices or links


# Commands writing one output file, OUT ({W}: the work folder, {T}: the test's own folder).
ONE_FILE_WRITERS = {
    "predict": ["predict", CLIP, "-o", "{OUT}", "--device", "cpu", "--jobs", "1"],
    "dnsmos": ["dnsmos", CLIP, "-o", "{OUT}", *DNSMOS_FAST],
    "dnsmos-summary": ["dnsmos", CLIP, "-o", "{T}/d.csv", "--summary-json", "{OUT}", *DNSMOS_FAST],
    "eval-qa-table": [*eval_qa("qa", "qa.list", "--out-dir", "{T}/ev"), "--table", "{OUT}"],
}


def node(path: Path) -> tuple:
    """What a node is (kind, device numbers, link target), not what it holds."""
    st = os.lstat(path)
    return stat.S_IFMT(st.st_mode), st.st_rdev, os.readlink(path) if path.is_symlink() else None


@pytest.fixture
def nodes(tmp_path) -> Path:
    """Copies of /dev/null and /dev/full made with mknod (the system's own are never written), a FIFO, a
    regular file, and a link to each, in one folder."""
    folder = tmp_path / "nodes"
    folder.mkdir()
    try:
        os.mknod(folder / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(folder / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
        (folder / "null").write_bytes(b"")  # a nodev mount makes nodes that cannot be opened
    except OSError as exc:
        pytest.skip(f"no usable mknod device nodes here ({exc})")
    os.mkfifo(folder / "fifo")
    (folder / "old.csv").write_text("old\n")
    for name in ("null", "full", "fifo", "old.csv"):
        os.symlink(folder / name, folder / f"link_to_{name}")
    return folder


def written_to_fifo(fifo: Path, write) -> tuple:
    """(what `write()` returned, the bytes a reader of `fifo` got meanwhile)."""
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = write()
    try:  # a writer that never opened the FIFO leaves the reader waiting for one: release it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    reader.join(30)
    return result, got[0] if got else b""


@pytest.mark.parametrize("writer", ONE_FILE_WRITERS)
def test_devices_fifos_and_links_are_written_into_never_replaced(work, nodes, tmp_path, writer,
                                                                 one_dnsmos_session):
    inputs, names = snapshot(work), sorted(os.listdir(nodes))
    kinds = {p.name: node(p) for p in nodes.iterdir()}

    def run(out):
        return invoke([a.format(W=work, T=tmp_path, OUT=out) for a in ONE_FILE_WRITERS[writer]])

    result = run(nodes / "null")  # -o /dev/null discards
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    result = run(nodes / "full")  # -o /dev/full: no space left, one line, exit 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "full" in errors[0] and "no space left on device" in errors[0], errors
    # A link to a FIFO, as /dev/stdout is in a pipe: the reader gets the whole output.
    result, got = written_to_fifo(nodes / "fifo", lambda: run(nodes / "link_to_fifo"))
    assert result.exit_code == 0, result.output
    assert got.strip() and b"\r" not in got, got
    result = run(nodes / "link_to_old.csv")  # a link to a regular file: its target replaced, the link kept
    assert result.exit_code == 0, result.output
    replaced = (nodes / "old.csv").read_bytes()
    assert replaced != b"old\n" and b"\r" not in replaced
    assert {p.name: node(p) for p in nodes.iterdir()} == kinds, "a device, FIFO or link was replaced"
    assert sorted(os.listdir(nodes)) == names, "a temporary file was left beside a node"
    assert snapshot(work) == inputs


# Commands whose CSV can go to stdout ({OUT}), and what their summary table's title says.
STDOUT_WRITERS = {
    "predict": (["predict", CLIP, "-m", "{W}/runs/qa", "-o", "{OUT}", "--device", "cpu"], "file(s)"),
    "dnsmos": (["dnsmos", CLIP, "-o", "{OUT}", *DNSMOS_FAST], "DNSMOS"),
    "eval-qa": ([*eval_qa("qa", "qa.list", "--out-dir", "{T}/ev"), "--table", "{OUT}"], "1 run(s)"),
}


@pytest.mark.skipif(not os.path.exists("/proc/self/fd/1"), reason="no /proc/self/fd")
@pytest.mark.parametrize("writer", STDOUT_WRITERS)
def test_out_dev_stdout_redirected_to_a_file_gets_the_csv_alone(work, tmp_path, writer):
    """`-o /dev/stdout > scores.csv`: the file holds the CSV and nothing else, the summary table goes to
    stderr (issue 33). A rename would have replaced the file, a second descriptor would have overwritten
    it; the output goes through stdout's own one. The link is this test's own copy of /dev/stdout, so code
    that still renamed over it harms nothing else."""
    os.symlink("/proc/self/fd/1", tmp_path / "stdout")
    root = Path(__file__).resolve().parent.parent
    args, title = STDOUT_WRITERS[writer]
    cmd = [sys.executable, "-m", "cli.main", *(a.format(W=work, T=tmp_path, OUT=tmp_path / "stdout")
                                                for a in args)]
    with open(tmp_path / "out.csv", "w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=300, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert os.readlink(tmp_path / "stdout") == "/proc/self/fd/1"
    rows = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert len({len(row) for row in rows}) == 1 and len(rows) >= 2, rows  # a header and whole rows alone
    assert title in done.stderr, done.stderr


# ---------------------------------------------------------------- --shard


def test_shard_blocks_cover_every_item_once_in_order():
    items = list(range(10))
    blocks = [shard(items, f"{k}/3") for k in (1, 2, 3)]
    assert sum(blocks, []) == items and sorted(map(len, blocks)) == [3, 3, 4]
    assert shard(items, None) == items and shard(items[:2], "3/3") == [1] and shard(items[:2], "1/3") == []
    for bad in ("0/3", "4/3", "3", "a/b"):
        with pytest.raises(MosqaError, match="--shard"):
            shard(items, bad)


@pytest.fixture
def one_dnsmos_session(monkeypatch):
    """Every dnsmos command of a test shares one Scorer and each file's row.

    These tests are about the file loop (shards, columns, lists), not the scores (test_dnsmos.py checks
    those), and one DNSMOS pass costs about a second per file on a busy 2-core machine.
    """
    from mosqa import dnsmos

    memo = functools.lru_cache(maxsize=None)
    monkeypatch.setattr(dnsmos.Scorer, "score_file", memo(dnsmos.Scorer.score_file))
    monkeypatch.setattr(dnsmos, "Scorer", memo(dnsmos.Scorer))


def test_dnsmos_three_shards_concatenate_to_the_unsharded_csv(work, tmp_path, one_dnsmos_session):
    folder = tmp_path / "in"
    shutil.copytree(work / "audio", folder)
    sf.write(folder / "quiet.wav", np.zeros(SR // 2, np.float32), SR)  # a row with a warning
    fast = ["--no-p808", "--jobs", "1", "--device", "cpu"]
    whole = tmp_path / "all.csv"
    assert invoke(["dnsmos", folder, "--out", whole, *fast]).exit_code == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"shard{k}.csv"
        result = invoke(["dnsmos", folder, "--out", part, "--shard", f"{k}/3", *fast])
        assert result.exit_code == 0, result.output
        lines = part.read_text().splitlines(keepends=True)
        parts += lines if k == 1 else lines[1:]
    assert "".join(parts) == whole.read_text()
    assert len(parts) == 1 + 4 and "shorter than 1 s" in parts[-1]


def test_enhance_shards_split_the_inputs(work, tmp_path):
    for k in (1, 2):
        result = invoke(["enhance", work / "runs" / "se", work / "audio", "--out-dir", tmp_path / "o",
                         "--shard", f"{k}/2", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["clip0.wav", "clip1.wav", "clip2.wav"][
            : 1 if k == 1 else 3]


# ---------------------------------------------------------------- runs


def test_eval_qa_glob_skips_unfinished_and_enhancement_runs_with_a_warning(work, tmp_path):
    result = invoke(["eval-qa", work / "runs" / "qa", work / "runs" / "failed", work / "runs" / "se",
                     "--list", work / "qa.list", "--out-dir", tmp_path / "ev", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert "runs/failed: no best.pt" in warnings[0] and "runs/se: a train-se run" in warnings[1]
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["compare_qa.csv", "qa"]
    assert (tmp_path / "ev" / "qa" / "predictions.csv").is_file()


def test_load_qa_names_the_kind_of_run_it_got(work):
    from mosqa.qa import load_qa

    with pytest.raises(MosqaError, match="this is a train-se run; load_qa needs a train-qa run"):
        load_qa(work / "runs" / "se")


def test_run_kind_from_the_kind_key_or_inferred(work, tmp_path):
    from mosqa.checks import run_kind

    assert run_kind(work / "runs" / "qa") == "qa" and run_kind(work / "runs" / "se") == "se"
    (tmp_path / "config.yaml").write_text("kind: se\narch: crn\nfeature: mag\n")
    assert run_kind(tmp_path) == "se" and run_kind(tmp_path / "nothing") is None


# ---------------------------------------------------------------- audio and lists


def test_dnsmos_warns_about_silent_and_short_files_and_reads_path_only_lists(work, tmp_path,
                                                                             one_dnsmos_session):
    (tmp_path / "paths.csv").write_text(f"path\n{work}/audio/clip0.wav\n{work}/bad/silent.wav\n"
                                        f"{work}/bad/short.wav\n")
    result = invoke(["dnsmos", "--list", tmp_path / "paths.csv", "--out", tmp_path / "d.csv", "--no-p808",
                     "--jobs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text())))
    warnings = {Path(r["filename"]).name: r["warning"] for r in rows}
    assert warnings["clip0.wav"] == "" and "silent" in warnings["silent.wav"]
    assert "shorter than 1 s" in warnings["short.wav"] and "warning:" in result.output


def test_one_path_per_line_lists_with_spaces_need_no_score(tmp_path):
    sf.write(tmp_path / "my clip.wav", speech(1.0, 150), SR)
    (tmp_path / "plain.txt").write_text("my clip.wav\n")
    assert [it.path.name for it in read_list(tmp_path / "plain.txt", require_score=False)] == ["my clip.wav"]
    with pytest.raises(MosqaError, match=r"plain\.txt:1"):
        read_list(tmp_path / "plain.txt")  # a QA list does need its score


def test_prepare_list_keeps_condition_and_group_for_eval_qa(work, tmp_path):
    rows = ["path,score,condition,speaker"]
    for i in range(12):
        name = f"c{i}.wav"
        sf.write(tmp_path / name, speech(0.6, 100 + 10 * i), SR)
        rows.append(f"{name},{1 + i / 3:.2f},cond{i % 3},spk{i % 4}")
    (tmp_path / "in.list").write_text("\n".join(rows) + "\n")
    result = invoke(["prepare-list", tmp_path / "in.list", "--out-dir", tmp_path / "lists", "--test-groups",
                     "spk3"])
    assert result.exit_code == 0, result.output
    test_items = read_list(tmp_path / "lists" / "wav_test_qn.list")
    assert {it.group for it in test_items} == {"spk3"} and {it.condition for it in test_items} == {"cond0",
                                                                                                      "cond1",
                                                                                                      "cond2"}
    assert all(it.condition for it in read_list(tmp_path / "lists" / "wav_train_qn_rs.list"))


def test_find_audio_follows_symlinked_folders_without_looping(work, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(work / "audio", data / "spk1")  # Kaldi-style: speakers linked in
    os.symlink(work / "audio", data / "spk1_again")  # the same folder twice is listed once
    (data / "sub").mkdir()
    os.symlink(data, data / "sub" / "back")  # a link cycle
    found = find_audio(data)
    assert [p.name for p in found] == ["clip0.wav", "clip1.wav", "clip2.wav"]


# ---------------------------------------------------------------- help


HELPED = ("simulate", "prepare-list", "eval-qa", "enhance", "dnsmos", "predict")


@pytest.mark.parametrize("name", HELPED)
def test_every_option_has_a_sentence_and_its_default(name):
    import typer.main

    command = typer.main.get_command(app).commands[name]
    for param in command.params:
        text = (param.help or "").strip()
        assert text.endswith(".") and len(text) > 10, f"{name} {param.name}: {text!r}"
        shown = param.default is not None and param.default is not False and param.default != [] and \
            not getattr(param, "is_flag", False)  # Typer shows these defaults itself
        assert shown or "default" in text.lower() or param.required, f"{name} {param.name}: no default stated"


def test_version():
    from mosqa import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mosqa {__version__}"


def test_train_se_mixing_names_the_list_line_of_a_silent_clean_file(work):
    from mosqa.se_data import MixDataset, audio_files

    clean, noise = audio_files(work / "silent_paths.list"), audio_files(work / "audio" / "clip2.wav")
    mixtures = MixDataset(list(clean), list(noise), SR, None, where=clean | noise)  # files in order
    assert len(mixtures[0][0]) == SR
    with pytest.raises(MosqaError, match=r"silent_paths\.list:2: .*silent\.wav: silent"):
        mixtures[1]


# ---------------------------------------------------------------- issue 33: the whole class


def command_params(name: str) -> dict:
    """Parameter name -> (annotation, Typer's OptionInfo/ArgumentInfo) of command `name`, in order."""
    import importlib
    import inspect
    import typing

    from cli.main import COMMANDS

    module = next(module for command, module, _ in COMMANDS if command == name)
    fn = importlib.import_module(f"cli.{module}").command
    hints = typing.get_type_hints(fn)
    return {p: (hints[p], param.default) for p, param in inspect.signature(fn).parameters.items()}


def flag(info, name: str) -> str:
    return next((d for d in getattr(info, "param_decls", ()) or () if d.startswith("--")),
                "--" + name.replace("_", "-"))


def is_range(info) -> bool:
    """A text option holding numbers, e.g. simulate's --snr-range 5,55."""
    default = str(getattr(info, "default", ""))
    try:
        return bool([float(v) for v in default.split(",")]) and "," in default
    except ValueError:
        return False


def numeric_options() -> list:
    from cli.main import COMMANDS

    found = []
    for name, _, _ in COMMANDS:
        for param, (kind, info) in command_params(name).items():
            if kind in (int, float) or (kind is str and is_range(info)):
                found.append(pytest.param(name, param, id=f"{name}{flag(info, param)}"))
    return found


# Each command with inputs that make it stop right after its options are judged (trainers and simulate
# on a missing input: a real run per value would take minutes) or finish in a moment (tiny inputs): the
# line every numeric value is tried on.
QUICK = {
    "simulate": ["simulate", "{W}/nope", "--out-dir", "{T}/sim", "--no-codecs"],
    "prepare-list": ["prepare-list", "{W}/qa.list", "--out-dir", "{T}/p"],
    "train-qa": ["train-qa", "--train", "{W}/nope.list", "--valid", "{W}/nope.list", *QA_TINY,
                 "--exp-dir", "{T}/exp"],
    "eval-qa": eval_qa("qa", "qa.list", "--out-dir", "{T}/ev"),
    "predict": ["predict", CLIP, "-m", "{W}/runs/qa", "-o", "{T}/p.csv", "--device", "cpu"],
    "dnsmos": ["dnsmos", CLIP, "-o", "{T}/d.csv", *DNSMOS_FAST],
    "train-se": ["train-se", "--train", "{W}/nope.list", "--valid", "{W}/nope.list", *SE_TINY,
                 "--exp-dir", "{T}/exp"],
    "enhance": enhance("se", CLIP, "--out-dir", "{T}/enh"),
}


@pytest.mark.parametrize("name, param", numeric_options())
def test_every_numeric_option_of_every_command_takes_nan_inf_negative_and_zero(work, tmp_path, name, param,
                                                                                 colour, one_dnsmos_session):
    """nan, inf, -1 and 0 on every number a command takes (found from its signature, so a new option is
    tried too): the command runs (exit 0) or refuses in one plain line (exit 2), never a traceback."""
    from mosqa.checks import LIMITS

    kind, info = command_params(name)[param]
    assert kind is str or param in LIMITS, f"{name} {flag(info, param)}: no bounds in mosqa.checks.LIMITS"
    arity = len(str(info.default).split(",")) if kind is str else 1
    for value in ("nan", "inf", "-1", "0"):
        args = [a.format(W=work, T=tmp_path) for a in QUICK[name]]
        result = invoke([*args, flag(info, param), ",".join([value] * arity)])
        if result.exit_code != 0:
            error_line(result)
        assert "Traceback" not in result.output, result.output


def command_line(name: str, values: dict) -> list:
    """Command `name` with each parameter in `values` given: arguments in order, then options."""
    import typer.models

    params = command_params(name)
    line = [name]
    for param, (_, info) in params.items():
        if param in values and isinstance(info, typer.models.ArgumentInfo):
            value = values[param]
            line += value if isinstance(value, list) else [value]
    for param, (_, info) in params.items():
        if param in values and not isinstance(info, typer.models.ArgumentInfo):
            for value in values[param] if isinstance(values[param], list) else [values[param]]:
                line += [flag(info, param), value]
    return line


# Every input each command reads (mosqa.checks.OWN_FILES names them), given at once: the output rule
# judges the outputs against them before anything else, whatever else is wrong with the line.
ALL_INPUTS = {
    "simulate": {"clean_dir": "{W}/clean_with_bad", "noise_dir": "{W}/audio", "rir_dir": "{W}/flac",
                 "music_dir": "{W}/clips.list"},
    "prepare-list": {"lists": ["{W}/qa.list", "{W}/pairs.list"]},
    "train-qa": {"config": "{W}/qa.yaml", "resume": "{W}/runs/qa", "train": "{W}/qa.list",
                 "valid": "{W}/wav_train_qn.list"},
    "eval-qa": {"runs": ["{W}/runs/qa", "{W}/runs/failed"], "list_path": "{W}/qa.list"},
    "predict": {"paths": ["{W}/flac/clip.flac", "{W}/audio"], "list_files": "{W}/clips.list",
                "model": "{W}/runs/qa"},
    "export": {"model": "{W}/runs/qa/best.pt"},
    "dnsmos": {"paths": ["{W}/flac/clip.flac"], "list_files": "{W}/clips.list", "model_dir": "{W}/adir",
               "sigmos_model": "{W}/random.pt"},
    "train-se": {"config": "{W}/se.yaml", "resume": "{W}/runs/se", "init": "{W}/runs/se",
                 "train": "{W}/pairs.list", "valid": "{W}/silent_pairs.list", "clean": "{W}/audio",
                 "noise": "{W}/flac", "rir": "{W}/clean_with_bad", "valid_clean": "{W}/clips.list",
                 "valid_noise": "{W}/clip1_link.wav", "qa_model": "{W}/runs/qa", "train_list": "{W}/qa.list",
                 "valid_list": "{W}/missing.list"},
    "enhance": {"paths": ["{W}/runs/se", "{W}/flac/clip.flac"]},
}


def own_files(path: Path) -> list[Path]:
    """An input and, for a run (or a checkpoint in one), the run's config and checkpoints."""
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.yaml").is_file():
        return [path]
    return [path, *(folder / n for n in ("config.yaml", "best.pt", "last.pt") if (folder / n).exists())]


def output_cases() -> list:
    from mosqa.checks import OWN_FILES

    return [pytest.param(name, output, id=f"{name}-{output}") for name, (outputs, _) in OWN_FILES.items()
            for output in outputs]


@pytest.mark.parametrize("name, output", output_cases())
def test_every_output_option_refuses_each_input_of_its_command(work, name, output, colour):
    """Every output option of every command pointed at each of its inputs, and at each file of a run it
    is given: refused before any work in one plain line, every input unchanged."""
    from cli.main import COMMANDS
    from mosqa.checks import OWN_FILES

    assert set(OWN_FILES) == {command for command, _, _ in COMMANDS}
    outputs, inputs = OWN_FILES[name]
    paths = {p for p, (kind, _) in command_params(name).items() if Path in (kind, *typing_args(kind))}
    assert paths <= {*outputs, *inputs}, f"{name}: {paths - {*outputs, *inputs}} not in OWN_FILES"
    assert set(ALL_INPUTS[name]) == set(inputs)
    given = {k: [v.format(W=work) for v in vs] if isinstance(vs, list) else vs.format(W=work)
             for k, vs in ALL_INPUTS[name].items()}
    targets = {t for vs in given.values() for v in (vs if isinstance(vs, list) else [vs])
               for t in own_files(Path(v))}
    before = snapshot(work)
    for target in sorted(targets):
        error = error_line(invoke(command_line(name, given | {output: str(target)})))
        assert "--" + output.replace("_", "-") in error or target.name in error, error
        assert snapshot(work) == before, f"{name} --{output} {target} changed files on disk"


def typing_args(kind) -> tuple:
    import typing

    return typing.get_args(kind)


# ---------------------------------------------------------------- issue 33: the rows that are not one line


def test_export_failure_is_one_plain_line_without_the_exporters_output(work, tmp_path, monkeypatch, colour):
    """When torch cannot export a model, its exporter prints the traced graph and raises pages of
    advice with colour codes; the user gets one plain line with the innermost reason, and no file."""
    import torch

    def failing_export(*args, **kwargs):
        print("def forward(self, arg0_1: f32[64, 2, 3, 3]):\n    traced graph ...")
        print("graph: " + "x" * 500, file=sys.stderr)
        try:
            raise RuntimeError("Could not extract specialized integer from u0\n\nCaused by: (model.py:52)")
        except RuntimeError as cause:
            raise ValueError("Failed. \x1b[96mThis is step 1/3\x1b[0m. Next steps:\n- ...") from cause

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    result = invoke(["export", work / "runs" / "qa", "-o", tmp_path / "x.onnx"])
    error = error_line(result)
    assert "traced graph" not in result.output and "xxxx" not in result.output, result.output
    assert error.endswith("(Could not extract specialized integer from u0 Caused by: (model.py:52))"), error
    assert not list(tmp_path.iterdir())


def test_error_lines_lose_escape_codes_and_line_breaks(capsys):
    from cli.main import report

    report("a \x1b[96mcoloured\x1b[0m\nmessage\x1b]8;;http://x\x07 with\ta link\x07")
    assert capsys.readouterr().err == "error: a coloured message with a link\n"


@pytest.mark.parametrize("engine", ["auto", "torch", "onnx"])
def test_diagnose_on_a_model_without_heads_names_one_that_has_them(work, tmp_path, engine, colour):
    """No engine can add heads a model lacks: the line says so and names a shipped model that has them,
    instead of suggesting another engine."""
    result = invoke(["predict", CLIP.format(W=work), "-m", "pesq-wb-nisqa", "--diagnose", "--engine", engine,
                     "-o", tmp_path / "s.csv"])
    error = error_line(result)
    assert "pesq-wb-nisqa has no diagnostic heads" in error and "--model pesq-wb)" in error, error
    assert "--engine" not in error and not (tmp_path / "s.csv").exists()


def test_scores_in_a_list_given_for_its_paths_are_ignored(work, tmp_path):
    """`--list` reads paths; its score column may hold anything (--help: scores in it are ignored)."""
    audio = work / "audio"
    (tmp_path / "scores.csv").write_text(f"path,score\n{audio}/clip0.wav,abc\n{audio}/clip1.wav,7.5\n"
                                         f"{audio}/clip2.wav,\n")
    (tmp_path / "plain.list").write_text(f"{audio}/clip0.wav,n/a\n{audio}/clip1.wav 9\n")
    for listed, count in (("scores.csv", 3), ("plain.list", 2)):
        result = invoke(["predict", "--list", tmp_path / listed, "-m", work / "runs" / "qa", "--device",
                         "cpu", "-o", tmp_path / "s.csv"])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
        assert len(rows) == count and all(1 <= float(r["score"]) <= 5 for r in rows), rows
    with pytest.raises(MosqaError, match=r"scores\.csv:2: score 'abc' is not a number"):
        read_list(tmp_path / "scores.csv")  # where a score is needed, it is still judged


@pytest.fixture
def full_disk(monkeypatch):
    """Every temporary file mosqa's writers make fails as on a full disk (ENOSPC)."""
    import errno
    import types

    import mosqa.audio

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mosqa.audio, "tempfile", types.SimpleNamespace(mkstemp=no_space))


def test_a_command_failing_on_a_full_disk_leaves_no_folder_behind(work, tmp_path, full_disk, colour):
    """simulate makes its folder before its first file; a write that fails takes the folders made for it
    (and their parents) away, as a run that fails before its first checkpoint does."""
    result = invoke(["simulate", work / "clean_with_bad", "--out-dir", tmp_path / "new" / "sim", "--per-utt",
                     "1", "--no-codecs", "--jobs", "1"])
    assert "no space left on device" in error_line(result)
    result = invoke(["predict", CLIP.format(W=work), "-m", work / "runs" / "qa", "--device", "cpu",
                     "-o", tmp_path / "made" / "for" / "s.csv"])
    assert "no space left on device" in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_simulation_keeps_the_clips_it_made_for_a_rerun(work, tmp_path, monkeypatch):
    """A failure after the first clip keeps the folder: a rerun resumes from its journal."""
    from mosqa import simulate

    def fail_at_the_end(*args, **kwargs):
        raise MosqaError("disk full while writing the reports")

    monkeypatch.setattr(simulate, "_finish", fail_at_the_end)
    result = invoke(["simulate", work / "clean_with_bad", "--out-dir", tmp_path / "sim", "--per-utt", "1",
                     "--no-codecs", "--jobs", "1"])
    assert result.exit_code == 2 and list((tmp_path / "sim" / "wav").glob("*.wav")), result.output


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_predict_workers_die_with_their_parent(tmp_path):
    """`predict -j 2` SIGKILLed: its workers end at once instead of scoring on (each has minutes of audio
    left, on the shipped model's torch engine)."""
    import signal
    import time

    for i in range(8):
        sf.write(tmp_path / f"long{i}.wav", speech(30.0, 110 + 15 * i), SR, subtype="PCM_16")
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "cli.main", "predict", tmp_path, "-j", "2", "--batch-size", "4", "--engine",
           "torch", "--device", "cpu", "-o", tmp_path / "s.csv"]
    parent = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
            workers = [p for p in children(parent.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, "the pool did not start"
        time.sleep(3)  # the workers load the model and start scoring
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(alive, workers)), "a worker outlived its killed parent"
    finally:
        for pid in [parent.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
