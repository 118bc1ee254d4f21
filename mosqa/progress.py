"""The one progress bar every long job shows (rich, on stderr, gone when the job ends)."""

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console | None = None, enabled: bool = True) -> Progress:
    """Name the task with `add_task(description, total=...)`; `enabled=False` silences non-main DDP ranks."""
    console = console or Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=console,
        # no bar fragments in logs and pipes, nor where colour is forced but animation is not wanted
        # (FORCE_COLOR=1 TTY_INTERACTIVE=0, as CI logs and the bad-input tests run)
        disable=not (enabled and console.is_interactive),
    )
