"""What train-qa and train-se options share: every option defaults to None ('not given') so that
defaults < YAML < flags holds, and names its real default in its help sentence."""

from pathlib import Path

import typer

CONFIG_HELP = "YAML config (recipes/conf/*.yaml); flags override it. Default: none."
RESUME_HELP = ("Continue RUN_DIR exactly from its last.pt with its own config; only --epochs, --device, "
               "--threads, --num-workers, --patience may change. Default: a new run.")


def opt(panel: str, help: str, *flags: str):
    return typer.Option(None, *flags, help=help, rich_help_panel=panel)


def deprecated(new: str):
    """An old train-se flag, hidden, accepted with a warning for one release."""
    return typer.Option(None, hidden=True, help=f"Deprecated: use {new}.")


def plain(options: dict) -> dict:
    """Paths as text, as YAML and the saved config hold them."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
