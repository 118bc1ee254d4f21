"""The `mosqa` command: one Typer app, one small module per subcommand.

Subcommand modules import the library inside their functions, so `mosqa dnsmos` never pays for
importing torch.
"""

import functools
import importlib
import re
import sys

import typer
from typer.core import TyperGroup

from mosqa.checks import check_options, refuse_own_inputs
from mosqa.errors import MosqaError

# click's UsageError (a bad option value, an unknown option), reached through the one click exception
# Typer exports, since newer Typer carries its own copy of click.
UsageError = typer.BadParameter.__base__
# Terminal control sequences (colours, cursor moves) and other control characters: an `error:` line is
# plain text wherever it goes (a terminal, a log file).
CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f]")


def report(message: str) -> None:
    """One plain `error:` line on stderr: escape codes removed, line breaks joined."""
    text = " ".join(CONTROL.sub("", message).split())
    typer.echo(f"error: {text}", err=True)


class PlainErrors(TyperGroup):
    """A usage error (`--epochs nan`, an unknown option) is one `error:` line and exit status 2, like
    every other bad input, instead of Typer's boxed usage text."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mosqa predict` alone: its help, as asked
                raise
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            report(exc.format_message() + where)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=PlainErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (command name, module under cli/, one-line help)
COMMANDS = [
    ("simulate", "simulate", "Build a PESQ-labelled corpus from clean speech, noise and RIR folders."),
    ("prepare-list", "prepare_list", "Validate lists, split by speaker, write score-balanced train lists."),
    ("train-qa", "train_qa", "Train a non-intrusive quality (MOS) model."),
    ("eval-qa", "eval_qa", "Evaluate quality models on a test list and compare runs."),
    ("predict", "predict", "Score audio with a quality model (default: the shipped pesq-wb model)."),
    ("export", "export", "Export a quality model to ONNX, for scoring with onnxruntime alone."),
    ("dnsmos", "dnsmos", "Score audio with DNSMOS P.835 (SIG/BAK/OVRL) and P.808."),
    ("train-se", "train_se", "Train a speech-enhancement model, optionally guided by a quality model."),
    ("enhance", "enhance", "Enhance audio files with a trained speech-enhancement model."),
]


def judged(name: str, fn):
    """Command `name` run once its option values are in range and none of its outputs is one of its
    inputs (mosqa.checks); a MosqaError is one plain `error:` line and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(**options):
        try:
            check_options(options)
            refuse_own_inputs(name, options)
            return fn(**options)
        except MosqaError as exc:
            report(str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def print_version(value: bool) -> None:
    if value:
        from mosqa import __version__

        typer.echo(f"mosqa {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(False, "--version", help="Print mosqa's version and exit.", is_eager=True,
                                 callback=print_version),
):
    """mosqa: train and evaluate non-intrusive speech quality models, train quality-guided speech
    enhancement, and score audio with DNSMOS."""


for name, module, summary in COMMANDS:
    command = importlib.import_module(f"cli.{module}").command
    app.command(name, help=(command.__doc__ or summary), short_help=summary)(judged(name, command))


def main():
    sys.exit(app())


if __name__ == "__main__":
    main()
