"""prepare.py and `mosqa prepare-list`: validation, grouped split, balancing, bad input via the CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli, tone

from mosqa.errors import MosqaError
from mosqa.lists import Item, read_list
from mosqa.prepare import assign_groups, balance, bin_edges, bin_index, parse_ratios, split_by_group, validate


def make_items(n_groups=12, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for g in range(n_groups):
        for _ in range(int(rng.integers(3, 30))):
            items.append(Item(Path(f"g{g}/x{len(items)}.wav"), float(rng.uniform(1, 4.6)), group=f"g{g}"))
    return items


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_never_puts_a_group_in_two_splits(seed):
    items = make_items(seed=seed)
    splits = split_by_group(items, (0.8, 0.1, 0.1), seed)
    groups = {name: {it.group for it in its} for name, its in splits.items()}
    assert all(groups[name] for name in groups)  # every split non-empty
    assert not groups["train"] & groups["valid"] and not groups["train"] & groups["test"]
    assert not groups["valid"] & groups["test"]
    assert sum(len(v) for v in splits.values()) == len(items)
    assert len(splits["train"]) > len(splits["valid"]) and len(splits["train"]) > len(splits["test"])
    assert split_by_group(items, (0.8, 0.1, 0.1), seed) == splits  # same seed, same split


def test_split_ratios_are_followed_when_groups_are_many():
    items = [Item(Path(f"{g}_{i}.wav"), 3.0, group=f"s{g}") for g in range(100) for i in range(5)]
    sizes = {k: len(v) for k, v in split_by_group(items, (0.7, 0.2, 0.1), 5).items()}
    assert sizes == {"train": 350, "valid": 100, "test": 50}


def test_pinned_test_groups_and_errors():
    items = make_items()
    splits = split_by_group(items, (0.8, 0.1, 0.1), 0, test_groups=["g3", "g7"])
    assert {it.group for it in splits["test"]} == {"g3", "g7"}
    assert not {"g3", "g7"} & {it.group for it in splits["train"] + splits["valid"]}
    with pytest.raises(MosqaError, match=r"unknown group\(s\) \['nobody'\]"):
        split_by_group(items, (0.8, 0.1, 0.1), 0, test_groups=["nobody"])
    both = split_by_group(items, (0.8, 0.1, 0.1), 0, test_groups=["g3"], valid_groups=["g1", "g5"])
    assert {it.group for it in both["valid"]} == {"g1", "g5"} and {it.group for it in both["test"]} == {"g3"}
    assert {it.group for it in both["train"]} == {it.group for it in items} - {"g1", "g3", "g5"}
    with pytest.raises(MosqaError, match=r"--valid-groups: group\(s\) \['g3'\] are already in the test"):
        split_by_group(items, (0.8, 0.1, 0.1), 0, test_groups=["g3"], valid_groups=["g3"])
    with pytest.raises(MosqaError, match="cannot split 3 ways by group"):
        split_by_group([Item(Path("a.wav"), 2.0, group="one")] * 5, (0.8, 0.1, 0.1), 0)
    assert parse_ratios("8,1,1") == (0.8, 0.1, 0.1)
    for bad in ("0.8,0.2", "a,b,c", "0,0.5,0.5", "0.8,-0.1,0.3"):
        with pytest.raises(MosqaError, match="--split"):
            parse_ratios(bad)


@pytest.mark.parametrize("target", ["median", "max", "7"])
def test_balancing_gives_every_filled_bin_the_target_within_one(target):
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(1, 1.5, 80), rng.uniform(2, 3, 25), rng.uniform(4, 4.6, 6)])
    items = [Item(Path(f"{i}.wav"), float(s)) for i, s in enumerate(scores)]
    edges = bin_edges((1, 5), 0.25)
    out, report = balance(items, edges, target, seed=0)
    counts = np.bincount(bin_index([it.score for it in items], edges), minlength=len(edges) - 1)
    wanted = {"median": np.median(counts[counts > 0]), "max": counts.max(), "7": 7}[target]
    after = np.bincount(bin_index([it.score for it in out], edges), minlength=len(edges) - 1)
    for b in range(len(edges) - 1):
        if counts[b]:
            assert abs(after[b] - wanted) <= 1
        else:
            assert after[b] == 0 and report[b]["action"] == "empty"
        assert report[b]["before"] == counts[b] and report[b]["after"] == after[b]
    ids = [id(it) for it in out]
    for b in range(len(edges) - 1):
        members = [id(it) for i, it in enumerate(items) if bin_index([it.score], edges)[0] == b]
        chosen = [i for i in ids if i in set(members)]
        if counts[b] > wanted:
            assert len(set(chosen)) == len(chosen)  # down-sampled without replacement
        elif counts[b]:
            assert set(chosen) == set(members)  # up-sampling keeps every original
    with pytest.raises(MosqaError, match="--target"):
        balance(items, edges, "most", 0)


def test_bins_cover_the_range_including_the_top_edge():
    edges = bin_edges((1, 5), 0.2)
    assert len(edges) == 21 and edges[-1] == pytest.approx(5.0)
    assert bin_index([1.0, 1.19, 1.2, 4.99, 5.0], edges).tolist() == [0, 0, 1, 19, 19]
    with pytest.raises(MosqaError):
        bin_edges((1, 5), 0)


def test_groups_from_column_meta_csv_or_folder(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "meta.csv").write_text("wav,clean,speaker,pesq\nwav/a.wav,clean/a.wav,spk9,3.0\n")
    (tmp_path / "sim" / "all.list").write_text("wav/a.wav,3.0\nwav/b.wav,2.0\n")
    items = assign_groups(read_list(tmp_path / "sim" / "all.list"), tmp_path / "sim" / "all.list")
    assert [it.group for it in items] == ["spk9", "wav"]  # meta.csv, else the parent folder
    (tmp_path / "g.csv").write_text("filepath_deg,mos,speaker\nx/a.wav,2.0,zed\n")
    assert assign_groups(read_list(tmp_path / "g.csv"), tmp_path / "g.csv")[0].group == "zed"


def test_validate_checks_duration_silence_and_decoding(tmp_path):
    sf.write(tmp_path / "short.wav", tone(seconds=0.2), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(tmp_path / "ok.wav", tone(), 16000)
    names = ["short.wav", "silent.wav", "ok.wav"]
    items = [Item(tmp_path / n, 3.0, where=f"l:{i}") for i, n in enumerate(names)]
    good, bad = validate(items, skip_bad=True)
    assert [it.path.name for it in good] == ["ok.wav"]
    assert "duration 0.20 s outside 0.5..60 s" in bad[0][1] and "silent" in bad[1][1]
    with pytest.raises(MosqaError, match=r"^l:0: .*short\.wav: duration"):
        validate(items)


# ---------------------------------------------------------------- through the CLI

def corpus(tmp_path, n_speakers=5, per_speaker=6):
    """speaker folders of valid wavs at assorted rates/channels, and a wav,score list over them."""
    rng = np.random.default_rng(0)
    lines = []
    for s in range(n_speakers):
        for i in range(per_speaker):
            path = tmp_path / "data" / f"spk{s}" / f"u{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sr = (8000, 16000, 44100, 48000)[(s + i) % 4]
            sf.write(path, tone(sr=sr, channels=1 + (i % 2)), sr)
            lines.append(f"data/spk{s}/u{i}.wav,{rng.uniform(1, 4.6):.3f}")
    return lines


def invoke(*args):
    return run_cli("prepare-list", *args)


def test_cli_writes_the_logs_lists_and_keeps_speakers_apart(tmp_path):
    lines = corpus(tmp_path)  # 8/44.1/48 kHz and stereo files are all fine: resampled/downmixed later
    (tmp_path / "all.list").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = invoke(tmp_path / "all.list", "--out-dir", out, "--seed", 3, "--bin-width", 0.5,
                    "--test-groups", "spk4")
    assert result.exit_code == 0, result.output
    for name in ("wav_train_qn.list", "wav_train_qn_rs.list", "wav_valid_qn.list", "wav_test_qn.list",
                 "score_hist.png", "prepare_summary.json"):
        assert (out / name).is_file(), name
    splits = {n: read_list(out / f"wav_{n}_qn.list") for n in ("train", "valid", "test")}
    folders = {n: {it.path.parent.name for it in its} for n, its in splits.items()}
    assert folders["test"] == {"spk4"}
    assert not folders["train"] & folders["valid"]
    assert sum(map(len, splits.values())) == 30
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["splits"]["test"]["groups"] == ["spk4"]
    assert "before/after balancing" in result.output


def write_bad_case(tmp_path, case):
    lines = corpus(tmp_path)
    bad = tmp_path / "data" / "bad.wav"
    if case == "missing":
        lines.insert(2, "data/none.wav,3.0")
    elif case == "score":
        lines.insert(2, "data/spk0/u0.wav,three")
    elif case == "corrupt":
        bad.write_bytes(b"RIFF....WAVEfmt garbage" * 3)
        lines.insert(2, "data/bad.wav,3.0")
    elif case == "silent":
        sf.write(bad, np.zeros(16000, np.float32), 16000)
        lines.insert(2, "data/bad.wav,3.0")
    (tmp_path / "in.list").write_text("\n".join(lines) + "\n")
    return tmp_path / "in.list"


@pytest.mark.parametrize("case, reason", [
    ("missing", "none.wav: no such audio file"),
    ("score", "score 'three' is not a number"),
    ("corrupt", "bad.wav: cannot decode audio"),
    ("silent", "bad.wav: silent"),
])
def test_cli_bad_input_stops_with_list_line_and_reason(tmp_path, case, reason):
    lst = write_bad_case(tmp_path, case)
    result = invoke(lst, "--out-dir", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"{lst}:3: " in result.output and reason in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "wav_train_qn.list").exists()


@pytest.mark.parametrize("case", ["missing", "score", "corrupt", "silent"])
def test_cli_skip_bad_drops_and_reports(tmp_path, case):
    lst = write_bad_case(tmp_path, case)
    result = invoke(lst, "--out-dir", tmp_path / "out", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "1 bad line(s)/file(s) dropped" in result.output
    rows = list(csv.reader(open(tmp_path / "out" / "bad_files.csv")))
    assert rows[0] == ["where", "reason"] and rows[1][0] == f"{lst}:3"
    total = sum(len(read_list(tmp_path / "out" / f"wav_{n}_qn.list")) for n in ("train", "valid", "test"))
    assert total == 30


def test_cli_help_and_option_errors(tmp_path):
    help_text = invoke("--help").output
    for flag in ("--out-dir", "--seed", "--split", "--bin-width", "--target", "--test-groups", "--skip-bad",
                 "--min-dur", "--max-dur"):
        assert flag in help_text
    (tmp_path / "a.list").write_text("\n".join(corpus(tmp_path)) + "\n")
    for args, message in ((["--split", "1,2"], "--split"), (["--target", "lots"], "--target"),
                          (["--test-groups", "ghost"], "unknown group"), (["--max-dur", "0.1"], "duration")):
        result = invoke(tmp_path / "a.list", "--out-dir", tmp_path / "o", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_cli_group_column_of_a_nisqa_style_csv(tmp_path):
    lines = corpus(tmp_path, n_speakers=1, per_speaker=8)  # one folder, so folders cannot split it
    rows = [f"{line.split(',')[0]},ref{i % 4}.wav,{line.split(',')[1]}" for i, line in enumerate(lines)]
    (tmp_path / "nisqa.csv").write_text("filepath_deg,filepath_ref,mos\n" + "\n".join(rows) + "\n")
    assert invoke(tmp_path / "nisqa.csv", "--out-dir", tmp_path / "o").exit_code == 2  # one group only
    result = invoke(tmp_path / "nisqa.csv", "--out-dir", tmp_path / "o", "--group-col", "filepath_ref",
                    "--split", "0.5,0.25,0.25")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "prepare_summary.json").read_text())
    groups = [set(summary["splits"][n]["groups"]) for n in ("train", "valid", "test")]
    assert sorted(len(g) for g in groups) == [1, 1, 2]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
