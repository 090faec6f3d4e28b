"""A report's sections: a titled block of figures and notes, the builder that draws each figure (a malformed
file becomes a note instead of a crash), and their HTML.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Callable

import plotly.graph_objects as go


@dataclass
class _Section:
    title: str
    intro: str = ""
    figures: list[str] = field(default_factory=list)  # HTML of each figure
    notes: list[str] = field(default_factory=list)  # problems, shown in place of a figure
    flags: list[str] = field(default_factory=list)  # warnings about the results themselves (e.g. a red flag)


def _figure_html(fig: go.Figure, idx: int) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"cc-fig-{idx}",
                      config={"displaylogo": False, "responsive": True})
    return f'<div class="cc-figure">{div}</div>'


class _Builder:
    def __init__(self) -> None:
        self.n = 0

    def add(self, section: _Section, what: str, make: Callable[[], go.Figure]) -> None:
        """Draw one figure; a malformed file becomes a note in the report instead of a crash."""
        try:
            fig = make()
        except (KeyError, TypeError, ValueError, IndexError) as e:
            section.notes.append(f"{what}: could not be drawn ({type(e).__name__}: {e})")
            return
        section.figures.append(_figure_html(fig, self.n))
        self.n += 1


def _section_html(sec: _Section) -> str:
    parts = [f"<section><h2>{html.escape(sec.title)}</h2>"]
    if sec.intro:
        parts.append(f'<p class="intro">{html.escape(sec.intro)}</p>')
    parts += [f'<p class="flag">{html.escape(n)}</p>' for n in sec.flags]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in sec.notes]
    parts += sec.figures
    parts.append("</section>")
    return "\n".join(parts)
