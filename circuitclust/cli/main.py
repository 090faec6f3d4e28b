"""The ``circuitclust`` command: one typer app, one module per sub-command (each registers itself)."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="circuitclust",
    help="Cluster transformer weight graphs, fine-tune for modularity, and patch clusters to find circuits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-command modules; importing one registers its commands on `app`.
from . import (
    cluster_cmd,  # noqa: E402,F401
    demo_cmd,  # noqa: E402,F401
    finetune_cmd,  # noqa: E402,F401
    graphs_cmd,  # noqa: E402,F401
    patch_cmd,  # noqa: E402,F401
    report_cmd,  # noqa: E402,F401
    similarity_cmd,  # noqa: E402,F401
    tasks_cmd,  # noqa: E402,F401
)


def main(argv: list[str] | None = None) -> None:
    """The console entry point: run ``app``, printing usage mistakes (unknown option, bad value, missing
    argument) as one ``error: ...`` line with exit status 2 instead of click's boxed message. SIGTERM and
    SIGHUP stop a command like Ctrl-C does, so its staging folder is removed."""
    import os
    import signal
    import sys

    from .common import Interrupted, LineTrackingStream

    def stop(signum, frame):
        raise Interrupted(signum)

    saved_stderr = sys.stderr
    saved_handlers = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved_handlers[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread: keep the default handlers
        pass
    sys.stderr = LineTrackingStream(sys.stderr)
    # Library warnings (tokenizer lengths, config defaults) would clutter the one-line errors and tables;
    # the user's own environment variables win.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    try:
        sys.exit(_run(argv))
    finally:
        sys.stderr = saved_stderr
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)


def _run(argv: list[str] | None) -> int:
    from typer.main import get_command

    from .common import click_exceptions, print_error

    cx = click_exceptions()
    try:
        code = get_command(app).main(args=argv, prog_name="circuitclust", standalone_mode=False)
    except cx.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `circuitclust` or `circuitclust CMD`: the help
            e.show()
            return e.exit_code
        sub = e.ctx.command_path if e.ctx is not None else "circuitclust"
        print_error(f"{e.format_message()} (see '{sub} --help')")
        return 2
    except typer.Abort:
        print_error("aborted")
        return 1
    except cx.ClickException as e:
        print_error(e.format_message())
        return e.exit_code
    return code if isinstance(code, int) else 0
