"""Audio libsndfile cannot read, decoded through PyAV (audio.py): phone, meeting and video containers.

Each file is made here with PyAV from built-in speech; predict and dnsmos must score it exactly as they
score the WAV that FFmpeg's own decoder writes of it, folders must hand it on, the usual checks apply,
and what neither library reads is the usual one-line error naming the file.
"""

import csv
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from mosqa.audio import (
    AUDIO_SUFFIXES,
    audio_info,
    find_audio,
    load_audio,
    load_audio_native,
    load_checked,
    resample,
)
from mosqa.defaults import builtin_speech_dir
from mosqa.errors import MosqaError
from mosqa.se_data import read_pairs

SPEECH = load_audio(sorted(builtin_speech_dir().glob("*/*.flac"))[0])[:24000]  # 1.5 s at 16 kHz


@dataclass(frozen=True)
class Container:
    muxer: str
    encoder: str
    rate: int
    channels: int = 1
    video: bool = False  # a video stream written before the audio, so the audio is not stream 0
    second_audio: bool = False  # a second audio stream (a tone) after the speech: only the first is read
    bit_rate: int = 0


CONTAINERS = {
    "call.m4a": Container("mp4", "aac", 16000),
    "call.aac": Container("adts", "aac", 22050),
    "call.amr": Container("amr", "libopencore_amrnb", 8000),
    "call.awb": Container("amr", "libvo_amrwbenc", 16000),
    "call.3gp": Container("3gp", "libopencore_amrnb", 8000),
    "meeting.webm": Container("webm", "libopus", 48000),
    "memo.wma": Container("asf", "wmav2", 16000, bit_rate=32000),
    # Interleaved integer samples (the decoders above give planar float): scaled as libsndfile scales them.
    "pcm16.mka": Container("matroska", "pcm_s16le", 16000, channels=2),
    "pcm8.mka": Container("matroska", "pcm_u8", 16000),
    "video.mp4": Container("mp4", "aac", 44100, channels=2, video=True),
    "video.mkv": Container("matroska", "libopus", 48000, channels=2, video=True, second_audio=True),
}


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:  # PyAV raises several types for a codec its FFmpeg build lacks
        return False
    return True


def encode(path: Path, c: Container, wav: np.ndarray = SPEECH) -> Path:
    """`wav` (16 kHz) as `c` describes; stereo channels differ in level so the downmix is seen."""
    pcm = resample(wav, 16000, c.rate)[None] * np.linspace(1.0, 0.5, c.channels, dtype=np.float32)[:, None]
    layout = {1: "mono", 2: "stereo"}[c.channels]
    with av.open(str(path), "w", format=c.muxer) as box:
        video = box.add_stream("mpeg4", rate=25) if c.video else None
        if video:
            video.width = video.height = 32
            video.pix_fmt = "yuv420p"
        tracks = [(box.add_stream(c.encoder, rate=c.rate, layout=layout), pcm)]
        if c.second_audio:
            tone = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(pcm.shape[1]) / c.rate)
            second = box.add_stream(c.encoder, rate=c.rate, layout=layout)
            tracks.append((second, np.tile(tone, (c.channels, 1))))
        for stream, samples in tracks:
            if c.bit_rate:
                stream.bit_rate = c.bit_rate
            frame = av.AudioFrame.from_ndarray(samples.astype(np.float32), format="fltp", layout=layout)
            frame.sample_rate = c.rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                box.mux(packet)
        if video:
            for i in range(pcm.shape[1] * 25 // c.rate):
                picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
                picture.pts = i
                box.mux(video.encode(picture))
            box.mux(video.encode(None))
    return path


def decoded_to_wav(src: Path, dst: Path) -> Path:
    """The first audio stream as FFmpeg decodes it, written by FFmpeg as 32-bit float WAV (no mosqa code)."""
    with av.open(str(src)) as box, av.open(str(dst), "w", format="wav") as out:
        audio = box.streams.audio[0]
        pcm = out.add_stream("pcm_f32le", rate=audio.codec_context.sample_rate,
                             layout=audio.codec_context.layout.name)
        for frame in box.decode(audio):
            frame.pts = None
            out.mux(pcm.encode(frame))
        out.mux(pcm.encode(None))
    return dst


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """name -> (container file, the WAV of its decoded PCM) for every container this PyAV can write."""
    root = tmp_path_factory.mktemp("containers")
    for folder in ("in", "ref"):
        (root / folder).mkdir()
    made = {}
    for name, c in CONTAINERS.items():
        if has_encoder(c.encoder):
            container = encode(root / "in" / name, c)
            made[name] = container, decoded_to_wav(container, root / "ref" / f"{name}.wav")
    return made


def read_rows(path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        return {Path(row["filename"]).name: row for row in csv.DictReader(fh)}


# command -> (the containers it scores, its options, the columns compared). DNSMOS pads every clip to 9 s,
# so it scores the formats the issue names; every container's decoded samples are compared above.
SCORED = {
    "predict": (tuple(CONTAINERS), ["--model", "pesq-wb-nisqa"], ["score"]),
    "dnsmos": (("call.m4a", "call.amr", "call.awb", "meeting.webm", "memo.wma", "video.mp4"), ["--jobs", "1"],
               ["OVRL", "SIG", "BAK", "P808_MOS"]),
}


@pytest.fixture(scope="module")
def scores(made, tmp_path_factory):
    """command -> its rows by file name; each command run once on the containers and their WAVs."""
    out = tmp_path_factory.mktemp("scores")
    inputs = {"predict": sorted({p.parent for pair in made.values() for p in pair}),  # folders: scanned too
              "dnsmos": [p for name in SCORED["dnsmos"][0] if name in made for p in made[name]]}
    rows = {}
    for command, (_, options, _) in SCORED.items():
        res = run_cli(command, *inputs[command], *options, "--device", "cpu", "-o", out / f"{command}.csv")
        assert res.exit_code == 0, res.output
        rows[command] = read_rows(out / f"{command}.csv")
    return rows


def test_every_container_suffix_is_picked_from_folders(made):
    assert {Path(n).suffix for n in CONTAINERS} <= AUDIO_SUFFIXES
    found = find_audio(next(iter(made.values()))[0].parent)
    assert [p.name for p in found] == sorted(made)


def made_pair(made, name) -> tuple[Path, Path]:
    if name not in made:
        pytest.skip(f"this PyAV build has no {CONTAINERS[name].encoder} encoder to make {name}")
    return made[name]


@pytest.mark.parametrize("name", CONTAINERS)
def test_decoded_exactly_as_ffmpeg_writes_it(made, name):
    container, wav = made_pair(made, name)
    ref, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == CONTAINERS[name].rate and ref.shape[1] == CONTAINERS[name].channels
    got, got_sr = load_audio_native(container)
    assert got_sr == sr
    np.testing.assert_array_equal(got, ref.mean(axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("command, name", [(c, n) for c, (names, _, _) in SCORED.items() for n in names])
def test_scored_exactly_as_the_pcm_its_decoder_writes(made, scores, command, name):
    container, wav = made_pair(made, name)
    got, want = scores[command][container.name], scores[command][wav.name]
    assert got["error"] == got["warning"] == "" and got["len_in_sec"] == want["len_in_sec"]
    for column in SCORED[command][2]:
        assert abs(float(got[column]) - float(want[column])) <= 1e-4, (column, got[column], want[column])


def test_first_audio_stream_and_downmix(made):
    """video.mkv holds a tone as its second audio stream: the speech, the first, is what is read; its two
    channels (levels 1 and 0.5) are averaged."""
    container, wav = made["video.mkv"]
    got = load_checked(container, None)
    assert np.corrcoef(resample(got, 48000, 16000)[:len(SPEECH)], SPEECH)[0, 1] > 0.9
    left = sf.read(wav, dtype="float32")[0][:, 0]
    assert np.sqrt(np.mean(got**2)) == pytest.approx(0.75 * np.sqrt(np.mean(left**2)), rel=0.02)


def test_length_comes_from_decoding(made, tmp_path):
    """audio_info (the SE pair-length check) counts decoded samples: AAC's priming and padding included."""
    container, wav = made["call.m4a"]
    samples = sf.info(str(wav)).frames
    assert audio_info(container) == (samples, 16000) and len(load_checked(container, None)) == samples
    pairs = tmp_path / "pairs.list"
    pairs.write_text(f"{container},{wav}\n")
    assert read_pairs(pairs) == [(container, wav, f"{pairs}:1")]
    sf.write(tmp_path / "long.wav", np.zeros(samples + 800, np.float32), 16000)
    pairs.write_text(f"{container},{tmp_path / 'long.wav'}\n")
    with pytest.raises(MosqaError, match=r"pairs\.list:1: noisy and clean differ in length"):
        read_pairs(pairs)


@pytest.mark.parametrize("clip, reason", [(np.zeros(16000, np.float32), "silent"),
                                          (SPEECH[:4000], "shorter than 0.5 s")])
def test_the_usual_checks_apply(tmp_path, clip, reason):
    path = encode(tmp_path / "bad.m4a", CONTAINERS["call.m4a"], clip)
    with pytest.raises(MosqaError, match=rf"^list:3: {tmp_path}/bad\.m4a: .*{reason}"):
        load_checked(path, where="list:3")


def test_what_neither_library_reads_is_one_error_line(tmp_path):
    bad = tmp_path / "x.m4a"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(MosqaError) as caught:
        load_audio(bad)
    assert str(caught.value) == (f"{bad}: cannot decode audio (libsndfile: Format not recognised; "
                                 "FFmpeg: Invalid data found when processing input)")
    (tmp_path / "in.list").write_text("x.m4a,3.0\n")
    res = run_cli("prepare-list", tmp_path / "in.list", "--out-dir", tmp_path / "out")
    assert res.exit_code == 2 and not (tmp_path / "out").exists()
    [line] = res.output.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/in.list:1: {caught.value}")
    for command, extra in (("predict", ["--model", "pesq-wb-nisqa"]), ("dnsmos", ["--jobs", "1"])):
        res = run_cli(command, bad, *extra, "--device", "cpu", "-o", tmp_path / f"{command}.csv")
        assert res.exit_code == 1, res.output
        assert read_rows(tmp_path / f"{command}.csv")["x.m4a"]["error"] == str(caught.value)


def test_decoding_a_container_never_imports_torch(made):
    """dnsmos's light install: the PyAV path, like libsndfile's, stays torch-free."""
    code = ("import sys\nfrom mosqa.audio import load_audio_native\n"
            f"load_audio_native({str(made['call.m4a'][0])!r})\n"
            "assert 'av' in sys.modules and 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
