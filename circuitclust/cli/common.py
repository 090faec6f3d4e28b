"""Helpers shared by the CLI commands: one-line errors, tables, device parsing. No maths here."""
from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

import typer

from ..errors import CircuitclustError


def one_line_errors(fn: Callable) -> Callable:
    """Turn :class:`CircuitclustError` (and a few obvious user errors) into ``error: ...`` and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (CircuitclustError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

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


def echo(msg: str = "") -> None:
    typer.echo(msg)
    sys.stdout.flush()
