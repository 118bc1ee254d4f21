"""Quality-model speed at every length, one CPU thread, beside `mosqa dnsmos` (issue 19's speed rule:
the default model must run at least 30x real time on one thread at any length).

    python recipes/bench/bench_qa_speed.py SPEECH_DIR [--models pesq-wb,pesq-wb-nisqa]
        [--lengths 1,3,8,30,120] [--seconds 60] [--out bench_out/qa_speed.csv]

For each length, clips of exactly that length are cut from the speech files (looped end to end) until
they hold --seconds of audio, written to disk, and scored as the commands score them (mosqa.predict's
torch engine, mosqa.dnsmos's scorer), all in this process, one thread each, after a warm-up clip.
Real-time factor = audio seconds / wall seconds; CPU seconds are printed too (a shared machine changes
them less). `x dnsmos` is the model's factor over DNSMOS's on the same clips: above 1 is faster.
"""

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

# isort: off
from bench_predict import timed  # first: it pins the math libraries to one thread before they load
import numpy as np
import soundfile as sf
# isort: on

from mosqa.audio import find_audio, load_audio

SR = 16000


def clips_of(speech: np.ndarray, seconds: float, total: float, out: Path) -> list[Path]:
    """ceil(total / seconds) clips of `seconds` each, consecutive cuts of the looped speech."""
    n, count = int(seconds * SR), max(1, int(np.ceil(total / seconds)))
    reps = int(np.ceil(n * (count + 1) / len(speech)))
    looped = np.tile(speech, reps)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out / f"clip_{seconds:g}s_{i:04d}.wav"
        sf.write(path, looped[i * n:(i + 1) * n], SR)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    from mosqa import dnsmos, predict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("speech", type=Path, help="a folder of speech files (looped into the clips)")
    ap.add_argument("--models", default="pesq-wb,pesq-wb-nisqa")
    ap.add_argument("--lengths", default="1,3,8,30,120", help="clip lengths in seconds")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per length")
    ap.add_argument("--out", type=Path, default=Path("bench_out/qa_speed.csv"))
    args = ap.parse_args(argv)
    files = find_audio(args.speech)[:40]
    speech = np.concatenate([load_audio(f) for f in files])
    lengths = [float(s) for s in args.lengths.split(",")]
    scorers = {m: predict.Predictor(predict.Options(model=m, device="cpu", engine="torch"), threads=1)
               for m in args.models.split(",")}
    dns = dnsmos.Scorer(threads=1)

    def dns_files(paths):
        return [dns.score_file(str(p)) for p in paths]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in lengths:
            paths = clips_of(speech, seconds, args.seconds, Path(tmp) / f"{seconds:g}")
            audio = len(paths) * seconds
            for name in [*scorers, "dnsmos"]:
                score = scorers[name].score_group if name in scorers else dns_files
                score(paths[:1])  # warm-up
                _, wall, cpu = timed(lambda score=score, paths=paths: score(paths))
                rows.append({"model": name, "seconds": seconds, "clips": len(paths),
                             "rtf_wall": audio / wall, "rtf_cpu": audio / cpu})
    base = {r["seconds"]: r["rtf_wall"] for r in rows if r["model"] == "dnsmos"}
    print(f"one thread each; load average {os.getloadavg()[0]:.1f}; "
          "x real time (wall / CPU), x dnsmos (wall)")
    print(f"{'model':16s} " + " ".join(f"{s:>22g}s" for s in lengths))
    for name in [*scorers, "dnsmos"]:
        cells = [r for r in rows if r["model"] == name]
        print(f"{name:16s} " + " ".join(f"{r['rtf_wall']:6.0f} /{r['rtf_cpu']:5.0f} "
                                        f"({r['rtf_wall'] / base[r['seconds']]:4.2f}x)" for r in cells))
    slowest = {name: min(r["rtf_wall"] for r in rows if r["model"] == name) for name in scorers}
    print("slowest length: " + ", ".join(f"{n} {v:.0f}x real time" for n, v in slowest.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
