"""The DNSMOS reference side of mosqa's tests and benchmark, in one place.

  fixtures DIR          make the golden-test audio with espeak-ng (run once; needs espeak-ng)
  clips CORPUS OUT N    N clips of 10 s of real speech from CORPUS/speech, and OUT/list.txt
  golden DIR OUT.json   score DIR's fixtures and mel test signals with the reference (speechmos + librosa)
  reference LIST OUT    score LIST's files with the reference, timed; scores and times to OUT (JSON)
  bench LIST REF        score LIST's files with mosqa's onnx and torch engines, compare with REF (JSON)
  grad-cost LIST        one differentiable forward + backward of 4 x 1 s crops (run with one thread)

`golden` and `reference` need librosa, which mosqa does not depend on: run them from a throwaway venv
(recipes/bench/bench_dnsmos.sh makes one); `bench` and `grad-cost` run in mosqa's own environment (torch).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above, "
    "and its two ends apparently beyond the horizon.",
]
# name -> (seconds, first sentence); the 60 s clip runs through every sentence, with pauses
SPEECH = {"speech_3s": (3, 0), "speech_10s": (10, 1), "speech_60s": (60, 3)}
MEL_SIGNAL_LEN = 3200


def espeak(text: str, voice: str, speed: int) -> np.ndarray:
    from mosqa.audio import resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        audio, sr = sf.read(str(wav), dtype="float32")
    return resample(audio, sr, SR)


def speech(seconds: int, first: int) -> np.ndarray:
    voices = ["en-us", "en", "en-us+f3", "en+m3"]
    parts, n, i = [], 0, first
    while n < seconds * SR:
        piece = espeak(SENTENCES[i % len(SENTENCES)], voices[i % len(voices)], 150 + 10 * (i % 3))
        pause = np.zeros(int(0.3 * SR), np.float32)
        parts += [piece, pause]
        n += len(piece) + len(pause)
        i += 1
    audio = np.concatenate(parts)[: seconds * SR]
    return 0.5 * audio / np.max(np.abs(audio))


def make_fixtures(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = {name: speech(sec, first) for name, (sec, first) in SPEECH.items()}
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(10 * SR).astype(np.float32)
    clean = clips["speech_10s"]
    gain = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (10 / 10))  # 10 dB SNR
    clips["speech_noise_10s"] = clean + gain * noise
    clips["white_noise_10s"] = 0.05 * noise
    clips["silence_10s"] = np.zeros(10 * SR, np.float32)
    for name, audio in clips.items():
        sf.write(str(out / f"{name}.flac"), audio, SR, subtype="PCM_16")
        print(name, len(audio) / SR, "s")


def mel_signal() -> np.ndarray:
    """A deterministic test signal (no RNG): two chirps and a decaying click train."""
    t = np.arange(MEL_SIGNAL_LEN) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 20000 * t**2)) + 0.1 * np.sin(2 * np.pi * 3000 * t * (1 + t))
    clicks = np.where(np.arange(MEL_SIGNAL_LEN) % 401 == 0, 0.5, 0.0) * np.exp(-t * 5)
    return (chirp + clicks).astype(np.float32)


class Reference:
    """speechmos's own DNSMOS, recording the raw (uncalibrated) per-segment scores it does not return."""

    def __init__(self, personalized: bool):
        import speechmos.dnsmos as ref

        self.model_type = "dnsmos_personalized" if personalized else "dnsmos"
        ref.run(np.zeros(SR * 10, np.float32), SR, model_type=self.model_type)  # builds the sessions
        self.model = ref.dnsmos
        self.raw = []
        calibrate = type(self.model).get_polyfit_val

        def recording(model, sig, bak, ovr, personal):
            self.raw.append((sig, bak, ovr))
            return calibrate(model, sig, bak, ovr, personal)

        self.model.get_polyfit_val = recording.__get__(self.model)

    def __call__(self, path: str) -> dict:
        import speechmos.dnsmos as ref

        self.raw = []
        out = ref.run(path, SR, model_type=self.model_type)
        raw = np.mean(np.array(self.raw, dtype=np.float64), axis=0)
        n = length = sf.info(path).frames
        while n < int(9.01 * SR):  # the reference repeats short clips
            n *= 2
        return {"len_in_sec": length / SR, "sr": SR, "num_hops": int(np.floor(n / SR) - 9.01) + 1,
                "OVRL_raw": float(raw[2]), "SIG_raw": float(raw[0]), "BAK_raw": float(raw[1]),
                "OVRL": float(out["ovrl_mos"]), "SIG": float(out["sig_mos"]), "BAK": float(out["bak_mos"]),
                "P808_MOS": float(out["p808_mos"])}


def golden(fixture_dir: str, out_json: str) -> None:
    import librosa

    files = sorted(Path(fixture_dir).glob("*.flac"))
    result = {"reference": f"speechmos 0.0.1.1, librosa {librosa.__version__}", "scores": {}}
    for mode, personalized in (("normal", False), ("personalized", True)):
        ref = Reference(personalized)
        result["scores"][mode] = {f.name: ref(str(f)) for f in files}
    with open(out_json, "w") as fh:
        json.dump(result, fh, indent=1)
    y = mel_signal()
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=321, hop_length=160, n_mels=120)
    features = (librosa.power_to_db(mel, ref=np.max) + 40) / 40
    np.savez_compressed(Path(out_json).with_name("mel_reference.npz"), signal=y, power=mel.T,
                        features=features.T, filterbank=librosa.filters.mel(sr=SR, n_fft=321, n_mels=120))
    print(json.dumps(result, indent=1))


def make_clips(corpus: str, out_dir: str, n: str) -> None:
    """Consecutive corpus utterances joined and cut into 10 s clips: DNSMOS's usual one-segment case."""
    from mosqa.audio import load_audio, write_audio

    out = Path(out_dir)
    files = sorted((Path(corpus) / "speech").rglob("*.flac"))
    clips, buffer = [], np.zeros(0, np.float32)
    for f in files:
        if len(clips) == int(n):  # enough: the rest of the corpus is not read
            break
        buffer = np.concatenate([buffer, load_audio(f)])
        while buffer.size >= 10 * SR and len(clips) < int(n):
            path = out / f"clip_{len(clips):04d}.flac"
            write_audio(path, buffer[: 10 * SR])
            clips.append(path)
            buffer = buffer[10 * SR:]
    if len(clips) < int(n):
        sys.exit(f"{corpus} holds only {len(clips)} clips of 10 s")
    (out / "list.txt").write_text("".join(f"{p}\n" for p in clips))


def cpu_seconds() -> float:
    """This process's CPU time plus its finished children's: the cost that contention does not change."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn):
    """(result, wall seconds, CPU seconds)"""
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - t0, cpu_seconds() - c0


SCORE_KEYS = ["OVRL_raw", "SIG_raw", "BAK_raw", "OVRL", "SIG", "BAK", "P808_MOS"]


def read_paths(list_path: str) -> list[str]:
    return [line.strip() for line in Path(list_path).read_text().splitlines() if line.strip()]


def reference(list_path: str, out_json: str) -> None:
    """The reference alone in this process (its own venv), after one warm-up file."""
    paths = read_paths(list_path)
    ref = Reference(personalized=False)
    ref(paths[0])  # first-run graph optimisation is not per-file cost
    rows, seconds, cpu = timed(lambda: [ref(p) for p in paths])
    Path(out_json).write_text(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows}))


def bench(list_path: str, reference_json: str) -> None:
    """mosqa's engines on the reference's files, each with its default plan (process pool on CPU)."""
    from mosqa.dnsmos import plan_jobs, score_files

    paths = read_paths(list_path)
    ref = json.loads(Path(reference_json).read_text())
    expected, n = ref["rows"], len(paths)
    workers, threads = plan_jobs(n, None, "cpu")
    print(f"files: {n} x 10 s; files/s and ratio from wall clock; CPU ms per file (children included)")
    print(f"{'reference (speechmos)':34s} {ref['seconds']:7.2f} s {n / ref['seconds']:6.2f} files/s  "
          f"CPU {1000 * ref['cpu'] / n:4.0f} ms")
    failed = False
    for engine in ("onnx", "torch"):
        print(f"  load average before {engine}: {os.getloadavg()[0]:.2f}")
        rows, seconds, cpu = timed(lambda e=engine: score_files(paths, device="cpu", engine=e))
        diffs = np.array([abs(g[k] - e[k]) for g, e in zip(rows, expected, strict=True) for k in SCORE_KEYS])
        name = f"mosqa --engine {engine} ({workers} x {threads} thr)"
        print(f"{name:34s} {seconds:7.2f} s {n / seconds:6.2f} files/s  CPU {1000 * cpu / n:4.0f} ms   "
              f"ratio {ref['seconds'] / seconds:.2f}x   largest score difference {diffs.max():.1e}")
        print(f"{'':34s} score differences: median {np.median(diffs):.1e}, 99th percentile "
              f"{np.percentile(diffs, 99):.1e}, over 1e-5: {int((diffs > 1e-5).sum())} of {diffs.size}")
        failed |= diffs.max() > 1e-4
    if failed:
        sys.exit("scores differ from the reference by more than 1e-4")


def grad_cost(list_path: str) -> None:
    """What DNSMOS costs as a training loss: forward + backward to the waveform, batch of 4 crops of 1 s."""
    import torch

    from mosqa.audio import load_audio
    from mosqa.dnsmos import load_torch

    model = load_torch()
    crops = torch.from_numpy(np.stack([load_audio(p)[:SR] for p in read_paths(list_path)[:4]]))

    def step():
        wav = crops.clone().requires_grad_(True)
        scores = model(wav)
        (scores["OVRL"].sum() + scores["P808"].sum()).backward()

    step()  # warm-up
    runs = [timed(step) for _ in range(3)]
    print(f"differentiable DNSMOS, 4 x 1 s, forward + backward on {torch.get_num_threads()} thread(s): "
          f"{1000 * min(r[1] for r in runs):.0f} ms wall, {1000 * min(r[2] for r in runs):.0f} ms CPU "
          f"(best of 3)")


COMMANDS = {"fixtures": make_fixtures, "clips": make_clips, "golden": golden, "reference": reference,
            "bench": bench, "grad-cost": grad_cost}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
