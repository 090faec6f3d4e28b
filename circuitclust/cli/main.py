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
from . import graphs_cmd  # noqa: E402,F401
from . import cluster_cmd  # noqa: E402,F401
from . import finetune_cmd  # noqa: E402,F401
from . import patch_cmd  # noqa: E402,F401
from . import similarity_cmd  # noqa: E402,F401
from . import tasks_cmd  # noqa: E402,F401
from . import report_cmd  # noqa: E402,F401
from . import demo_cmd  # noqa: E402,F401
