"""The cross-renderer sets (mosqa.crossrender): audiomentations degrades the held-out voices, the labels
are wideband PESQ against the clean reference, and the same seed gives the same set with any jobs."""

import csv
import random

import numpy as np
import pytest
import soundfile as sf

from mosqa import campaign, crossrender
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.errors import MosqaError

SR = 16000


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross_sources")
    sf.write(root / "noise.wav", generated_noises(seconds=4.0)["pink"], SR)
    rir = np.exp(-np.arange(SR // 4) / 600) * np.random.default_rng(0).standard_normal(SR // 4)
    sf.write(root / "rir.wav", rir.astype(np.float32), SR)
    (root / "noise.list").write_text("noise.wav\n")
    (root / "rir.list").write_text("rir.wav\n")
    speech = root / "speech"
    speech.mkdir()
    (speech / "spk2").symlink_to(builtin_speech_dir() / "spk2")
    return root


def _render(sources, out, jobs):
    return crossrender.render_set(sources / "speech", sources / "noise.list", sources / "rir.list", out,
                                  per_utt=3, seed=7, jobs=jobs)


def test_a_tiny_set_builds_with_pesq_labels_and_is_the_same_with_any_jobs(sources, tmp_path):
    one = _render(sources, tmp_path / "one", jobs=1)
    paths, y, rows = campaign.read_set(one)
    assert len(rows) >= 12 and all(p.is_file() for p in paths)
    assert np.all((y[:, 0] >= 1.0) & (y[:, 0] <= 4.7))
    kinds = {k for r in rows for k in r["degradations"].split("+")}
    assert kinds <= {*crossrender.TRANSFORMS, "clean"} and len(kinds) >= 5
    assert np.ptp(y[:, 0]) > 1.0  # the transforms do degrade
    two = _render(sources, tmp_path / "two", jobs=2)
    assert (one / "meta.csv").read_text() == (two / "meta.csv").read_text()
    wav = rows[0]["wav"]
    assert np.array_equal(sf.read(one / wav)[0], sf.read(two / wav)[0])
    with open(one / "all.list") as f:  # what `mosqa predict --list` reads
        assert len(list(csv.reader(f))) == len(rows)


def test_every_transform_changes_the_clip(sources):
    """Each registry entry does something audible to a clip on its own (no silent no-op entry)."""
    from mosqa.audio import load_audio

    clean = load_audio(next((builtin_speech_dir() / "spk2").glob("*.flac")))
    noises, rooms = crossrender.read_list(sources / "noise.list"), crossrender.read_list(sources / "rir.list")
    for name, transform in crossrender.make_transforms(noises, rooms).items():
        np.random.seed(1)  # audiomentations draws from both global generators (crossrender seeds both)
        random.seed(1)
        out = np.asarray(transform(samples=clean, sample_rate=SR))[: len(clean)]
        assert np.sqrt(np.mean((out[: len(clean)] - clean[: len(out)]) ** 2)) > 1e-4, name


def test_an_empty_list_is_one_line(sources, tmp_path):
    (tmp_path / "empty.list").write_text("# nothing\n")
    with pytest.raises(MosqaError, match="no files listed"):
        crossrender.render_set(sources / "speech", tmp_path / "empty.list", sources / "rir.list",
                               tmp_path / "out", per_utt=1, seed=0)
