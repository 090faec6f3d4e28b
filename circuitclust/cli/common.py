"""Helpers shared by the CLI commands: one-line errors, tables, device parsing. No maths here."""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Sequence

import typer

from ..errors import CircuitclustError, OptionError


def click_exceptions():
    """The click exception classes typer's commands raise (typer vendors its own copy of click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # a typer that uses the click package
        from click import exceptions
    return exceptions


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP turned into an exception, so that cleanups (staging folders) run as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class LineTrackingStream:
    """A text stream that remembers the last character written to it (progress bars end lines with ``\r``),
    so that an error message can start on a line of its own, in a terminal and in a captured log alike."""

    def __init__(self, stream):
        self._stream = stream
        self.last_char = "\n"

    def write(self, text: str) -> int:
        if text:
            self.last_char = text[-1]
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _close_progress_bars() -> None:
    """Close every open tqdm bar and end the current line unless it is already ended."""
    from tqdm import tqdm

    bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        bar.close()
    last = getattr(sys.stderr, "last_char", None)
    if (last is not None and last != "\n") or (last is None and any(not bar.disable for bar in bars)):
        sys.stderr.write("\n")
        sys.stderr.flush()


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, on one line and never glued to a progress bar."""
    _close_progress_bars()
    line = " ".join(str(message).split())  # one line, whatever the message held
    typer.echo(f"error: {line}", err=True)


def error_exit_code(e: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status for an exception the CLI reports without a traceback, or None.

    User errors (:class:`CircuitclustError`, files and folders the OS refuses, running out of memory) exit
    with 2; any other exception is a bug in circuitclust and exits with 1, its traceback shown only with
    ``CIRCUITCLUST_DEBUG=1``."""
    import torch

    if isinstance(e, OptionError):
        return e.cli_message(), 2
    if isinstance(e, CircuitclustError):
        return str(e), 2
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        return (f"cannot write {e.filename}: a file stands where a folder is needed ({e.strerror}); give a path "
                "whose parent folders are folders", 2)
    if isinstance(e, PermissionError):
        return f"permission denied: {e.filename}: choose a folder you can write to", 2
    if isinstance(e, OSError):
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return f"{e.strerror or e}{where}", 2
    if isinstance(e, (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))) or (
            isinstance(e, RuntimeError) and "can't allocate memory" in str(e)):
        return ("out of memory: use a smaller --batch-size / --max-rows / --n, or a machine with more memory", 2)
    if isinstance(e, Exception):
        first = (str(e).strip().splitlines() or [""])[0]
        return (f"internal error ({type(e).__name__}: {first}); this is a bug in circuitclust: re-run with "
                "CIRCUITCLUST_DEBUG=1 to see the traceback and report it", 1)
    return None


def one_line_errors(fn: Callable) -> Callable:
    """Report any exception from a command as one ``error: ...`` line (see :func:`error_exit_code`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as e:
            _close_progress_bars()
            signum = getattr(e, "signum", 2)
            typer.echo("interrupted" if signum == 2 else f"interrupted by signal {signum}", err=True)
            raise typer.Exit(128 + signum) from None
        except (typer.Exit, typer.Abort, click_exceptions().ClickException):
            raise
        except Exception as e:
            if os.environ.get("CIRCUITCLUST_DEBUG"):
                raise
            message, code = error_exit_code(e)
            print_error(message)
            raise typer.Exit(code) from None

    return wrapper


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain fixed-width text table (floats to 4 significant digits)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def fmt_interval(summary: dict | None, digits: int = 4) -> str:
    """``mean [lo, hi]`` of an across-seed summary (``circuitclust.core.replicates.summarise``); just the mean
    with one seed, ``-`` without a value."""
    if not isinstance(summary, dict) or summary.get("mean") is None:
        return "-"
    text = f"{summary['mean']:.{digits}g}"
    if summary.get("lo") is not None:
        text += f" [{summary['lo']:.{digits}g}, {summary['hi']:.{digits}g}]"
    return text


def echo(msg: str = "") -> None:
    typer.echo(msg)
    sys.stdout.flush()


DTYPE_HELP = "weights of the loaded model: float32 (default), bfloat16 or float16 (half the memory; bf16 needs a recent CPU or GPU)"
DEVICE_MAP_HELP = ("spread the model over several devices instead of --device (inference only): auto, balanced, "
                   "balanced_low_0, sequential, or a JSON object {\"module\": \"cuda:0\", ...}")
