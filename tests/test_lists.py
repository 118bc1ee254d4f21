"""lists.py: every list format users bring, and a clear list:line error for every bad line."""

from pathlib import Path

import pytest

from mosqa.errors import MosqaError
from mosqa.lists import Item, read_list, write_list


def write(tmp_path, text, name="x.list"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wav_score(tmp_path):
    items = read_list(write(tmp_path, "a.wav,3.5\n/abs/b.wav,1.0\n"))
    assert [(it.path, it.score) for it in items] == [(tmp_path / "a.wav", 3.5), (Path("/abs/b.wav"), 1.0)]
    assert items[0].where == f"{tmp_path / 'x.list'}:1"


def test_noisy_clean_score_and_noisy_clean(tmp_path):
    items = read_list(write(tmp_path, "n.wav,c.wav,2.25\n"))
    assert (items[0].path, items[0].clean, items[0].score) == (tmp_path / "n.wav", tmp_path / "c.wav", 2.25)
    pairs = read_list(write(tmp_path, "n.wav,c.wav\n", "p.list"), require_score=False)
    assert pairs[0].clean == tmp_path / "c.wav" and pairs[0].score is None


def test_whitespace_separated_comments_blank_lines_and_bom(tmp_path):
    text = "\ufeff# a comment\n\nsub/a.wav 4.0\n   \n  # another\nb.wav\t1.5\n"
    items = read_list(write(tmp_path, text))
    assert [(it.path.name, it.score) for it in items] == [("a.wav", 4.0), ("b.wav", 1.5)]
    assert items[0].path == tmp_path / "sub" / "a.wav"
    assert items[1].where.endswith(":6")  # line numbers count comments and blank lines


def test_bare_paths_when_no_score_is_needed(tmp_path):
    items = read_list(write(tmp_path, "a.wav\nb.flac\n"), require_score=False)
    assert [it.path.name for it in items] == ["a.wav", "b.flac"]
    with pytest.raises(MosqaError, match=r"x\.list:1: expected 'wav,score'"):
        read_list(tmp_path / "x.list")


def test_nisqa_style_csv_with_header(tmp_path):
    text = ("db,con,filepath_deg,filepath_ref,mos,speaker\n"
            "NISQA_TEST,3,deg/c01.wav,ref/c01.wav,3.2,spkA\n"
            "NISQA_TEST,4,deg/c02.wav,,1.8,spkB\n")
    items = read_list(write(tmp_path, text, "nisqa.csv"))
    assert items[0].path == tmp_path / "deg" / "c01.wav" and items[0].clean == tmp_path / "ref" / "c01.wav"
    assert items[1].clean is None
    assert [it.score for it in items] == [3.2, 1.8]
    assert [it.condition for it in items] == ["3", "4"]
    assert [it.group for it in items] == ["spkA", "spkB"]
    assert items[0].extra["db"] == "NISQA_TEST" and items[0].where.endswith(":2")


def test_named_columns_override_detection(tmp_path):
    text = "file_x,quality,who\na.wav,2.5,s1\n"
    items = read_list(write(tmp_path, text, "c.csv"), path_col="file_x", score_col="quality", group_col="who")
    assert (items[0].path.name, items[0].score, items[0].group) == ("a.wav", 2.5, "s1")
    with pytest.raises(MosqaError, match="no column 'nope'"):
        read_list(tmp_path / "c.csv", path_col="nope")
    with pytest.raises(MosqaError, match="none of the columns"):
        read_list(tmp_path / "c.csv")


@pytest.mark.parametrize("line, reason", [
    ("a.wav,abc", r"x\.list:2: score 'abc' is not a number"),
    ("a.wav,nan", r"x\.list:2: score 'nan' is not finite"),
    ("a.wav,7.5", r"x\.list:2: score 7\.5 outside 1\.\.5"),
    ("a.wav,b.wav,c.wav,3", r"x\.list:2: expected 'wav,score' or 'noisy,clean,score', got 4 fields"),
    ("a.wav,b.wav,x", r"x\.list:2: score 'x' is not a number"),
    ("a.wav", r"x\.list:2: expected 'wav,score', got one field"),
])
def test_bad_lines_name_list_and_line(tmp_path, line, reason):
    path = write(tmp_path, f"ok.wav,3.0\n{line}\n")
    with pytest.raises(MosqaError, match=reason):
        read_list(path)


def test_bad_csv_rows(tmp_path):
    path = write(tmp_path, "filepath_deg,mos\na.wav,3\nb.wav\nc.wav,zz\n", "h.csv")
    with pytest.raises(MosqaError, match=r"h\.csv:3: 1 fields, the header has 2"):
        read_list(path)
    with pytest.raises(MosqaError, match="header but no rows"):
        read_list(write(tmp_path, "filepath_deg,mos\n", "e.csv"))


def test_bad_lines_can_be_collected_instead(tmp_path):
    bad = []
    items = read_list(write(tmp_path, "a.wav,3\nb.wav,zz\nc.wav,9\nd.wav,2\n"), bad_lines=bad)
    assert [it.path.name for it in items] == ["a.wav", "d.wav"]
    assert len(bad) == 2 and ":2: score 'zz'" in bad[0] and ":3: score 9" in bad[1]
    bad = []
    items = read_list(write(tmp_path, "filepath_deg,mos\na.wav,3\nb.wav\n", "h.csv"), bad_lines=bad)
    assert len(items) == 1 and "h.csv:3" in bad[0]


def test_missing_empty_and_binary_lists(tmp_path):
    with pytest.raises(MosqaError, match="no such list file"):
        read_list(tmp_path / "none.list")
    with pytest.raises(MosqaError, match="list is empty"):
        read_list(write(tmp_path, "# only a comment\n\n"))
    (tmp_path / "a.wav").write_bytes(b"RIFF\xff\xfe\x00\x80" * 10)
    with pytest.raises(MosqaError, match="not a text list"):
        read_list(tmp_path / "a.wav")


def test_write_list_round_trip_is_relative_below_the_list(tmp_path):
    items = [Item(tmp_path / "wav" / "a.wav", 3.14159, clean=tmp_path / "clean" / "a.wav"),
             Item(Path("/elsewhere/b.wav"), 1.0, clean=Path("/elsewhere/cb.wav"))]
    write_list(tmp_path / "pairs.list", items)
    text = (tmp_path / "pairs.list").read_text().splitlines()
    assert text[0] == "wav/a.wav,clean/a.wav,3.1416"
    assert text[1] == "/elsewhere/b.wav,/elsewhere/cb.wav,1.0000"
    back = read_list(tmp_path / "pairs.list")
    assert back[0].path == tmp_path / "wav" / "a.wav" and back[0].score == pytest.approx(3.1416)
    write_list(tmp_path / "qa.list", items, with_clean=False)
    assert (tmp_path / "qa.list").read_text().splitlines()[0] == "wav/a.wav,3.1416"
