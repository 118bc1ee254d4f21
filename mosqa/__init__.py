"""mosqa: non-intrusive speech quality models, quality-guided enhancement, DNSMOS scoring.

Imports stay lazy so that `import mosqa.dnsmos` does not pull in torch.
"""

__version__ = "0.1.0"


def load_qa(run_dir, device="cpu"):
    """A trained quality model as a differentiable waveform -> MOS module (see mosqa.qa)."""
    from mosqa.qa import load_qa as _load_qa

    return _load_qa(run_dir, device=device)
