"""The Distill-MOS reference side of mosqa's tests: score fixture audio with the published package.

    pip download --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0 -d WHEELS && unzip each into SITE
    python recipes/bench/distillmos_reference.py SITE tests/fixtures/distillmos/golden.json FILE...

SITE holds the unzipped `distillmos` and `xls_r_sqa` packages; their code is imported as published,
only `torchaudio` (used by the package's file reader, not by the model) is replaced by an empty module
because it fails to load beside this project's torch. The scores are those of the published float32
weights; mosqa ships them as float16 (tests allow 3e-3).
"""

import json
import sys
import types
from pathlib import Path

import soundfile as sf
import torch


def main(argv=None) -> int:
    site, out, *files = argv or sys.argv[1:]
    sys.path.insert(0, site)
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    from distillmos.sqa import ConvTransformerSQAModel

    model = ConvTransformerSQAModel().eval()
    scores = {}
    for f in files:
        wav, sr = sf.read(f, dtype="float32")
        assert sr == 16000 and wav.ndim == 1, f
        with torch.no_grad():
            scores[Path(f).name] = float(model(torch.from_numpy(wav)[None]))
    Path(out).write_text(json.dumps({"package": "distillmos 0.9.1", "scores": scores}, indent=1) + "\n")
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
