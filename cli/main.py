"""The `mosqa` command: one Typer app, one small module per subcommand.

Subcommand modules import the library inside their functions, so `mosqa dnsmos` never pays for
importing torch.
"""

import functools
import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from mosqa.errors import MosqaError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

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


def reports_errors(fn):
    """Turn a MosqaError into one red line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MosqaError as exc:
            # escaped: a message is plain text, and `[...]` in it (a path, an extra's name) is not markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
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
    app.command(name, help=(command.__doc__ or summary), short_help=summary)(reports_errors(command))


def main():
    sys.exit(app())


if __name__ == "__main__":
    main()
