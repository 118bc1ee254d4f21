"""Write a fixed set of noisy mixtures as files: a held-out test set every enhancer is scored on.

    python recipes/tools/make_mixtures.py CLEAN NOISE OUT_DIR [--items 120] [--snr-min 0] [--snr-max 15]
        [--max-seconds 8] [--seed 1234]

CLEAN and NOISE are folders or lists (as train-se's --clean/--noise). Items walk the clean files in
order (each used once before any twice) and mix each with a noise and SNR drawn from the seed, the way
train-se builds its validation set (mosqa.se_data.MixDataset); an utterance longer than --max-seconds
keeps its first --max-seconds. Writes OUT_DIR/noisy/*.wav, OUT_DIR/clean/*.wav and OUT_DIR/pairs.list
(noisy,clean), the list `mosqa enhance` and recipes/bench/se_bench_table.py read. Files are written under a
temporary name first, the list last: an interrupted run leaves no list, and rerunning finishes it.
"""

import argparse
import sys
from pathlib import Path

from mosqa.audio import write_audio
from mosqa.errors import MosqaError
from mosqa.se_data import VALID_EPOCH, MixDataset, audio_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clean")
    ap.add_argument("noise")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--items", type=int, default=120)
    ap.add_argument("--snr-min", type=float, default=0.0)
    ap.add_argument("--snr-max", type=float, default=15.0)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--sample-rate", type=int, default=16000)
    args = ap.parse_args(argv)
    try:
        clean, noise = audio_files(args.clean), audio_files(args.noise)
        mixtures = MixDataset(list(clean), list(noise), args.sample_rate, None, (args.snr_min, args.snr_max),
                              items=args.items, seed=args.seed, where=clean | noise)
    except MosqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mixtures.set_epoch(VALID_EPOCH)
    keep = int(args.max_seconds * args.sample_rate)
    lines = []
    for kind in ("noisy", "clean"):
        (args.out_dir / kind).mkdir(parents=True, exist_ok=True)
    try:
        for i in range(len(mixtures)):
            name = f"mix{i:04d}.wav"
            if not all((args.out_dir / kind / name).is_file() for kind in ("noisy", "clean")):
                for kind, wav in zip(("noisy", "clean"), mixtures[i], strict=True):
                    write_audio(args.out_dir / kind / name, wav[:keep], args.sample_rate)
            lines.append(f"noisy/{name},clean/{name}")
    except MosqaError as exc:  # a corrupt or silent file, named by list:line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (args.out_dir / "pairs.list").write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} mixtures ({args.snr_min:g}-{args.snr_max:g} dB SNR) in {args.out_dir}/pairs.list")
    return 0


if __name__ == "__main__":
    sys.exit(main())
