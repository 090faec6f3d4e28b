"""``circuitclust report RUN_DIR [--compare OTHER_RUN] -o report.html``: one self-contained HTML report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import echo, one_line_errors
from .main import app


@app.command("report")
@one_line_errors
def report(
    run_dir: Path = typer.Argument(..., help="a run folder (sub-folders of several steps are found recursively)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="another run folder to show side by side"),
    out: Path = typer.Option(Path("report.html"), "-o", "--out", help="HTML file to write"),
    weights: bool = typer.Option(True, "--weights/--no-weights",
                                 help="draw weight heatmaps (loads the models the partitions belong to)"),
    weight_cells: int = typer.Option(1_200_000, help="cap on heatmap cells in the whole page (~5 bytes each)"),
    screenshot: Optional[Path] = typer.Option(None, help="also save a PNG of the top of the page (needs Chromium "
                                                         "and selenium), e.g. docs/report.png"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an -o file that is not a circuitclust report"),
) -> None:
    """Write one HTML file (plotly.js embedded, opens offline) with a summary table and the figures of
    whatever RUN_DIR holds: clusterability, fine-tuning curves, patching effects and circuits, layer similarity."""
    from ..errors import check_int
    from ..report import build_report, check_report_path, report_figure_count

    check_int("--weight-cells", weight_cells, 0)
    check_report_path(out, overwrite)
    def warn(note: str) -> None:
        typer.echo(f"warning: {' '.join(note.split())}", err=True)

    path = build_report(run_dir, compare=compare, out=out, weights=weights, weight_cells=weight_cells,
                        on_note=warn)
    size = path.stat().st_size / 1e6
    echo(f"wrote {path} ({report_figure_count(path)} figures, {size:.1f} MB)")
    if screenshot is not None:
        from ..browser import screenshot as take_screenshot

        echo(f"wrote {take_screenshot(path, screenshot)}")
