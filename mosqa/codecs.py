"""Speech codecs for the codec degradation: encode, decode, back to 16 kHz at the input's length.

Each codec runs in this process through PyAV (FFmpeg's libraries, shipped in its wheel) when PyAV has
it, else through the `ffmpeg` program when one is installed: one process start per clip encodes into a
pipe, and PyAV decodes the stream (a second start only where PyAV lacks the decoder, codec2); several
times the CPU of the in-process path. G.711 mu-law is numpy and always there. Codecs delay the
signal by their look-ahead (at most ~65 ms here); the decoded signal is kept as it comes, since PESQ
aligns in time, and trimmed or padded to the input length.
"""

import functools
import importlib.util
import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from mosqa.audio import SAMPLE_RATE, decoded_mono, resample
from mosqa.errors import MosqaError


@dataclass(frozen=True)
class Codec:
    encoder: str  # FFmpeg encoder name
    sample_rate: int
    container: str  # an FFmpeg muxer that takes this codec (ffmpeg program path)
    bitrates: tuple = ()  # passed as -b:a
    modes: tuple = ()  # passed as -mode (codec2)
    decoder: str = ""  # FFmpeg decoder name PyAV decodes it with; "" = the ffmpeg program decodes


# Mostly low bit-rates (a few higher ones keep codec clips from piling up around PESQ 2).
CODECS = {
    "opus": Codec("libopus", 16000, "ogg", ("6k", "8k", "12k", "16k", "24k", "32k"), decoder="opus"),
    "mp3": Codec("libmp3lame", 16000, "mp3", ("8k", "16k", "24k", "32k", "48k"), decoder="mp3"),
    "aac": Codec("aac", 16000, "matroska", ("8k", "12k", "16k", "24k", "32k"), decoder="aac"),
    "amr-nb": Codec("libopencore_amrnb", 8000, "amr", ("4.75k", "7.4k", "12.2k"), decoder="amrnb"),
    "amr-wb": Codec("libvo_amrwbenc", 16000, "amr", ("6.6k", "12.65k", "23.85k"), decoder="amrwb"),
    "g722": Codec("adpcm_g722", 16000, "g722", ("64k",), decoder="g722"),
    "gsm": Codec("libgsm", 8000, "gsm", decoder="gsm"),
    "g726": Codec("g726", 8000, "matroska", ("16k", "24k", "32k"), decoder="g726"),
    "g723.1": Codec("g723_1", 8000, "matroska", ("6.3k",), decoder="g723_1"),
    "speex": Codec("libspeex", 16000, "ogg", ("4k", "8k", "12k", "24k"), decoder="speex"),
    "codec2": Codec("libcodec2", 8000, "codec2", modes=("700C", "1200", "2400", "3200")),
    "vorbis": Codec("libvorbis", 16000, "ogg", ("16k", "24k"), decoder="vorbis"),
}
# Sample formats the in-process path can hand an encoder, with the numpy type each takes.
PCM_TYPES = {"s16": np.int16, "s16p": np.int16, "flt": np.float32, "fltp": np.float32}


def _pyav_has(name: str, mode: str) -> bool:
    """PyAV is installed and its FFmpeg build has this encoder ("w") or decoder ("r")."""
    if not name or importlib.util.find_spec("av") is None:
        return False
    import av

    try:
        av.Codec(name, mode)
    except Exception:  # PyAV raises several types for a codec its FFmpeg build lacks
        return False
    return True


def _pyav_round_trips(c: Codec) -> bool:
    """A codec can be in PyAV's build and still refuse to run without a container (g726 does): try it."""
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 5) / SAMPLE_RATE)
    try:
        _pyav_round_trip(tone, c, (c.modes or c.bitrates or (None,))[0])
    except Exception:  # PyAV raises its own error types for an encoder or decoder that will not open
        return False
    return True


def _ffmpeg_encoders() -> set:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return set()
    try:
        listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.split()[1] for line in listing.splitlines() if len(line.split()) > 1}


@functools.cache
def codec_backends() -> dict:
    """name -> "pyav" (in this process) or "ffmpeg" (the program), for every CODECS entry usable here."""
    program = _ffmpeg_encoders()
    out = {}
    for name, c in CODECS.items():
        if _pyav_has(c.encoder, "w") and _pyav_has(c.decoder, "r") and _pyav_round_trips(c):
            out[name] = "pyav"
        elif c.encoder in program:
            out[name] = "ffmpeg"
    return out


CODEC_SETS = {
    "none": lambda backends: (),
    "in-process": lambda backends: tuple(name for name, how in backends.items() if how == "pyav"),
    "all": lambda backends: tuple(backends),
}


def select_codecs(spec: str) -> tuple:
    """`--codecs`: a set from CODEC_SETS or NAME,NAME,...; names from CODECS usable here (mu-law, numpy,
    is always drawn besides them)."""
    backends = codec_backends()
    if spec in CODEC_SETS:
        return CODEC_SETS[spec](backends)
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in names if n not in CODECS]
    if unknown or not names:
        raise MosqaError(f"--codecs {spec!r}: expected {', '.join(CODEC_SETS)} or names from "
                         f"{', '.join(CODECS)}")
    missing = [n for n in names if n not in backends]
    if missing:
        raise MosqaError(f"--codecs: {', '.join(missing)} not available here (neither PyAV nor the ffmpeg "
                         "program has it)")
    return names


def _bits_per_second(setting: str) -> int:
    return round(float(setting.rstrip("k")) * 1000)


def _pyav_round_trip(wav: np.ndarray, c: Codec, setting: str | None) -> np.ndarray:
    import av

    encoder = av.CodecContext.create(c.encoder, "w")
    formats = [f.name for f in encoder.codec.audio_formats or ()]
    fmt = next(f for f in PCM_TYPES if f in formats)
    encoder.sample_rate, encoder.layout, encoder.format = c.sample_rate, "mono", fmt
    if setting:
        encoder.bit_rate = _bits_per_second(setting)
    encoder.open()
    pcm = resample(np.clip(wav, -1, 1).astype(np.float32), SAMPLE_RATE, c.sample_rate)
    if PCM_TYPES[fmt] is np.int16:
        pcm = np.round(pcm * 32767).astype(np.int16)
    step = encoder.frame_size or 1024
    pcm = np.pad(pcm, (0, -len(pcm) % step))  # encoders with a fixed frame size want whole frames
    packets = []
    for start in range(0, len(pcm), step):
        frame = av.AudioFrame.from_ndarray(pcm[None, start:start + step], format=fmt, layout="mono")
        frame.sample_rate, frame.pts = c.sample_rate, start
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create(c.decoder, "r")
    decoder.sample_rate, decoder.layout = c.sample_rate, "mono"
    if encoder.extradata:
        decoder.extradata = encoder.extradata
    return _to_16k(frame for packet in [*packets, None] for frame in decoder.decode(packet))


def _to_16k(frames) -> np.ndarray:
    """Decoded PyAV frames -> one float32 signal at 16 kHz (decoders pick their own rate: opus 48 kHz)."""
    wav, rate = decoded_mono(frames)
    return resample(wav, rate, SAMPLE_RATE)


def _ffmpeg_round_trip(wav: np.ndarray, c: Codec, setting: str | None) -> np.ndarray:
    """Encode with the ffmpeg program through pipes; decode in-process where PyAV can, else a second run."""
    pcm = np.round(np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
    opts = ["-mode", setting] if c.modes else (["-b:a", setting] if setting else [])
    base = ["ffmpeg", "-v", "error", "-nostdin"]
    raw = ["-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    encode = [*base, *raw, "-i", "pipe:0", "-ac", "1", "-ar", str(c.sample_rate), "-c:a", c.encoder, *opts,
              "-f", c.container, "pipe:1"]
    stream = subprocess.run(encode, input=pcm, check=True, capture_output=True, timeout=120).stdout
    if _pyav_has(c.decoder, "r"):
        import av

        with av.open(io.BytesIO(stream), format=c.container) as box:
            return _to_16k(box.decode(audio=0))
    decode = [*base, "-f", c.container, "-i", "pipe:0", *raw, "pipe:1"]
    out = subprocess.run(decode, input=stream, check=True, capture_output=True, timeout=120).stdout
    return np.frombuffer(out, "<i2").astype(np.float32) / 32768.0


ROUND_TRIPS = {"pyav": _pyav_round_trip, "ffmpeg": _ffmpeg_round_trip}


def run_codec(wav: np.ndarray, name: str, setting: str | None) -> np.ndarray:
    """Encode and decode `wav` (16 kHz); the result is trimmed or padded to the input length."""
    out = ROUND_TRIPS[codec_backends()[name]](wav, CODECS[name], setting)
    return np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))


def mulaw(wav: np.ndarray) -> np.ndarray:
    """G.711-style mu-law at 8 kHz in numpy: the codec that needs neither PyAV nor ffmpeg."""
    narrow = resample(np.clip(wav, -1, 1).astype(np.float32), SAMPLE_RATE, 8000)
    mu = 255.0
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    quantised = np.round(companded * 127) / 127
    expanded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu
    return resample(expanded.astype(np.float32), 8000, SAMPLE_RATE)[: len(wav)]
