"""What train-qa and train-se options share: every option defaults to None ('not given') so that
defaults < YAML < flags holds, and names its real default in its help sentence."""

from pathlib import Path

import typer

CONFIG_HELP = "YAML config (recipes/conf/*.yaml); flags override it. Default: none."
RESUME_HELP = ("Continue RUN_DIR exactly from its last.pt with its own config; only --epochs, --device, "
               "--threads, --num-workers, --patience, --tensorboard may change. Default: a new run.")


def opt(panel: str, help: str, *flags: str):
    return typer.Option(None, *flags, help=help, rich_help_panel=panel)


def deprecated(new: str):
    """An old train-se flag, hidden, accepted with a warning for one release."""
    return typer.Option(None, hidden=True, help=f"Deprecated: use {new}.")


def train(module: str, config, resume, options: dict) -> None:
    """Start a new run of mosqa.<module> (train or train_se) or resume one; print its directory."""
    import importlib

    from mosqa.checks import checked_config
    from mosqa.errors import MosqaError

    trainer = importlib.import_module(f"mosqa.{module}")
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    if resume is not None:
        if config is not None:
            raise MosqaError("--resume uses the run's own config.yaml; drop --config")
        run_dir = trainer.train(resume=resume, overrides=options)
    else:
        cfg = trainer.resolve(config, options)
        run_dir = trainer.train(checked_config(cfg, runs={"qa_model": "qa"}, inputs=trainer.PATH_KEYS))
    typer.echo(str(run_dir))
