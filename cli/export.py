"""`mosqa export`: parse options, write a quality model's ONNX graph with mosqa.export, print its path."""

from pathlib import Path

import typer


def command(
    model: str = typer.Argument(..., help="A train-qa run directory or checkpoint, or a shipped model's name "
                                "(pesq-wb, pesq-wb-nisqa)."),
    out: Path = typer.Option(None, "--out", "-o", help="The ONNX file. Default: model.onnx beside the "
                             "model's best.pt, where `mosqa predict --engine onnx --model MODEL` finds it."),
):
    """Export a quality model to ONNX: waveform in, scores out (pesq-wb: also listener_mos and the
    diagnostics), its front end included, so that `mosqa predict --engine onnx` scores with onnxruntime
    and needs no torch. The graph is checked against torch (float32 both) on a probe batch (scores equal
    to 1e-4) before it is written."""
    from mosqa.checks import output_file
    from mosqa.export import export_onnx

    if out is not None:
        output_file(out, "--out")
    typer.echo(str(export_onnx(model, out)))
