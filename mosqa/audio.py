"""Waveform I/O: any audio file -> mono float32 at the rate the caller asks for.

libsndfile (soundfile) reads what it can (WAV, FLAC, MP3, Ogg Vorbis/Opus, ...); PyAV (FFmpeg's libraries,
shipped in its wheel) decodes the rest: phone and meeting recordings (m4a/AAC, AMR, 3GP, WebM, WMA) and the
first audio stream of a video file. Kept free of torch so that `mosqa dnsmos` starts fast; the STFT front
end models read lives in frontend.py.
"""

import csv
import errno
import io
import os
import sys
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from mosqa.checks import in_place, made_folder, replaced_file, standard_stream
from mosqa.errors import MosqaError

SAMPLE_RATE = 16000
# What every command accepts as usable audio (prepare-list, train-qa, eval-qa, train-se refuse the rest;
# dnsmos and enhance warn): shorter clips give a quality model a handful of frames, and a clip below
# -70 dBFS is digital silence or nearly so, whose label means nothing.
MIN_SECONDS = 0.5
SILENCE_DB = -70.0
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _readable_suffixes() -> frozenset[str]:
    """File name endings of every format this soundfile build reads (headerless RAW excluded)."""
    names = {f.lower() for f in sf.available_formats()} - {"raw"}
    aliases = {"aiff": ["aif", "aifc"], "mpeg": ["mp3"], "ogg": ["oga", "opus"], "wavex": ["wav"]}
    return frozenset(f".{s}" for name in names for s in [name, *aliases.get(name, [])])


# What libsndfile does not read and FFmpeg does, so that folders hand these files on too: MPEG-4 and 3GPP
# (m4a/AAC, ALAC, AMR in .3gp), raw AAC and AMR-NB/WB, Matroska/WebM (Opus, Vorbis), ASF (WMA), AC-3,
# WavPack, Monkey's Audio, and video containers (their first audio stream).
FFMPEG_SUFFIXES = frozenset({
    ".m4a", ".m4b", ".aac", ".amr", ".awb", ".3gp", ".3g2", ".webm", ".weba", ".mka", ".wma", ".asf",
    ".ac3", ".wv", ".ape", ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".wmv",
})
AUDIO_SUFFIXES = _readable_suffixes() | FFMPEG_SUFFIXES


def find_audio(folder) -> list[Path]:
    """Every readable audio file below `folder`, recursively, in a stable (sorted) order.

    Symlinked folders are followed (Kaldi-style data dirs link speakers in); each real folder is
    walked once, so a link loop cannot recurse forever and two links to one folder do not double it.
    """
    found, walked = [], {Path(folder).resolve()}
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = Path(root)
        fresh = {}
        for d in sorted(dirs):
            fresh.setdefault((here / d).resolve(), d)
        dirs[:] = [d for real, d in fresh.items() if real not in walked]
        walked.update(fresh)
        found += [here / f for f in files
                  if Path(f).suffix.lower() in AUDIO_SUFFIXES and (here / f).is_file()]
    return sorted(found)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis; exact rational ratio, no FFT wrap-around."""
    if sr_in == sr_out:
        return wav
    # Imported here, not at the top: scipy.signal takes 0.5 s to import, paid by every scoring worker.
    from scipy.signal import resample_poly

    ratio = Fraction(sr_out, sr_in)
    return resample_poly(wav, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def load_audio(path, sr: int | None = SAMPLE_RATE) -> np.ndarray:
    """Read `path`, downmix to mono and resample to `sr` (None keeps the file's rate).

    Raises MosqaError naming the file for a missing, undecodable, empty or non-finite file.
    """
    wav, file_sr = load_audio_native(path)
    return wav if sr is None else resample(wav, file_sr, sr)


def load_audio_native(path) -> tuple[np.ndarray, int]:
    """Mono float32 at the file's own rate, plus that rate."""
    path = Path(path)
    if not path.is_file():
        raise MosqaError(f"{path}: no such audio file")
    wav, sr = _decode(path)
    if wav.size == 0:
        raise MosqaError(f"{path}: empty audio file (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise MosqaError(f"{path}: audio contains NaN or infinite samples")
    return wav, sr


def audio_info(path) -> tuple[int, int]:
    """(samples, rate) of an audio file: from the header where libsndfile reads it, else by decoding it
    (a container's stated duration is not exact: AAC's priming samples, missing or rounded durations)."""
    try:
        info = sf.info(str(path))
        return info.frames, info.samplerate
    except Exception:  # soundfile raises several types for what it cannot read
        wav, sr = load_audio_native(path)
        return len(wav), sr


def _read_sndfile(path: Path) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0], sr


# PyAV's sample types -> (offset, divisor) that put them on [-1, 1), as libsndfile scales PCM.
PCM_RANGES = {np.dtype(np.uint8): (128.0, 128.0), np.dtype(np.int16): (0.0, 2.0**15),
              np.dtype(np.int32): (0.0, 2.0**31), np.dtype(np.int64): (0.0, 2.0**63),
              np.dtype(np.float32): (0.0, 1.0), np.dtype(np.float64): (0.0, 1.0)}


def decoded_mono(frames) -> tuple[np.ndarray, int | None]:
    """PyAV audio frames -> (mono float32, their rate; None for no frames). Each frame is downmixed as it
    comes, so a stream may change its channel count midway; never its rate (one rate is what callers
    resample from)."""
    chunks, rates = [], set()
    for frame in frames:
        pcm = frame.to_ndarray()
        if not frame.format.is_planar:  # interleaved: one row of (samples x channels)
            pcm = pcm.reshape(-1, len(frame.layout.channels)).T
        offset, scale = PCM_RANGES[pcm.dtype]
        chunks.append(((pcm.astype(np.float32) - offset) / np.float32(scale)).mean(axis=0))
        rates.add(frame.sample_rate)
    if len(rates) > 1:
        raise ValueError(f"sample rate changes midway ({', '.join(map(str, sorted(rates)))} Hz)")
    return np.concatenate([np.zeros(0, np.float32), *chunks]), next(iter(rates), None)


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream, a video file's too."""
    import av  # imported here: only files libsndfile cannot read pay for it

    with av.open(str(path), metadata_errors="ignore") as box:
        if not box.streams.audio:
            raise ValueError("no audio stream")
        stream = box.streams.audio[0]
        wav, rate = decoded_mono(box.decode(stream))
        return wav, rate or stream.codec_context.sample_rate  # an empty stream still names its rate


def _reason(exc: Exception) -> str:
    """The cause alone: libsndfile's and FFmpeg's messages repeat the path and an error number."""
    reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    return reason.splitlines()[0].rstrip(".") if reason else type(exc).__name__


# Tried in this order; the first that decodes the file wins.
DECODERS = {"libsndfile": _read_sndfile, "FFmpeg": _read_ffmpeg}


def _decode(path: Path) -> tuple[np.ndarray, int]:
    reasons = []
    for name, read in DECODERS.items():
        try:
            wav, sr = read(path)
        except Exception as exc:  # both libraries raise several types for a file they cannot read
            reasons.append(f"{name}: {_reason(exc)}")
            continue
        return np.ascontiguousarray(wav, dtype=np.float32), int(sr)
    raise MosqaError(f"{path}: cannot decode audio ({'; '.join(reasons)})")


def level_db(wav: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def is_silent(wav: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    return level_db(wav) < threshold_db


def audio_problem(wav: np.ndarray, sr: int, min_seconds: float = MIN_SECONDS,
                  max_seconds: float | None = None, silence_db: float = SILENCE_DB) -> str | None:
    """Why a decoded clip is unusable (too short, too long, silent), or None when it is fine."""
    seconds = len(wav) / sr
    if max_seconds is not None and not min_seconds <= seconds <= max_seconds:
        return f"duration {seconds:.2f} s outside {min_seconds:g}..{max_seconds:g} s"
    if seconds < min_seconds:
        return f"duration {seconds:.2f} s, shorter than {min_seconds:g} s"
    if is_silent(wav, silence_db):
        return f"silent (level {level_db(wav):.0f} dBFS, below {silence_db:g})"
    return None


def load_checked(path, sr: int | None = SAMPLE_RATE, where: str = "", **limits) -> np.ndarray:
    """load_audio, refusing what audio_problem refuses; errors start with `where` (list:line) if given.

    `limits` are audio_problem's min_seconds / max_seconds / silence_db.
    """
    prefix = f"{where}: " if where else ""
    try:
        wav, file_sr = load_audio_native(path)
    except MosqaError as exc:
        raise MosqaError(f"{prefix}{exc}") from None
    problem = audio_problem(wav, file_sr, **limits)
    if problem is not None:
        raise MosqaError(f"{prefix}{path}: {problem}")
    return wav if sr is None else resample(wav, file_sr, sr)


@contextmanager
def atomic_path(path):
    """Yield a temporary path; once the block succeeds, its bytes become `path`'s.

    The output rule (mosqa.checks): a regular file (or a link's target, the link kept) is replaced by a
    rename beside it, so a crash never leaves a torn file; a device, FIFO or this process's stdout is
    written into, so `-o /dev/null` discards and /dev/null stays a device. A full disk is one error line.
    """
    path = Path(path)
    try:
        if in_place(path):
            yield from _in_place(path)
            return
        target = replaced_file(path)
        with made_folder(target.parent):  # a folder made for a write that fails goes with it
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                       suffix=path.suffix or ".tmp")
            os.close(fd)
            try:
                yield Path(tmp)
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs the usual permissions
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise MosqaError(f"{path}: cannot write: {os.strerror(exc.errno).lower()}") from None


@contextmanager
def atomic_csv(path, fieldnames=None, **options):
    """A csv writer (a DictWriter given `fieldnames`) whose rows become `path` by atomic_path. Lines end
    in a bare LF, as every other text mosqa writes does (csv's own default is CR LF)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        if fieldnames is None:
            yield csv.writer(fh, lineterminator="\n", **options)
        else:
            yield csv.DictWriter(fh, fieldnames, lineterminator="\n", **options)


def _in_place(path: Path):
    """atomic_path for a device, FIFO or standard stream: the block writes a temporary file (in the
    temp folder: /dev is no place for it), whose bytes are then written into `path`."""
    fd, tmp = tempfile.mkstemp(suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        data = Path(tmp).read_bytes()
        stream = standard_stream(path)
        if stream is None:
            with open(path, "wb") as fh:
                fh.write(data)
        else:  # through the descriptor, so what is printed next follows the output
            for text in (sys.stdout, sys.stderr):
                text.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(stream, view):]
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_audio(path, wav: np.ndarray, sr: int = SAMPLE_RATE, subtype: str | None = None) -> None:
    """Write atomically; the format follows the suffix (.wav -> 16-bit PCM unless `subtype`).

    WAV and FLAC are encoded in memory first: libsndfile fsyncs a file it closes, which costs more than
    encoding a clip, and the atomic rename already keeps a crash from leaving a torn file.
    """
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    wav = np.asarray(wav, dtype=np.float32)
    with atomic_path(path) as tmp:
        if fmt is None:
            sf.write(str(tmp), wav, sr, subtype=subtype or "PCM_16")
            return
        buffer = io.BytesIO()
        sf.write(buffer, wav, sr, format=fmt, subtype=subtype or "PCM_16")
        tmp.write_bytes(buffer.getvalue())
