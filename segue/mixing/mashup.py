"""Mashups: two beat-aligned, key-matched excerpts overlaid over N bars.

A mashup is rendered by the transition renderer with a different mask: the incoming song
rises over the first quarter, both play at full level through the middle (the bass handed
over on one downbeat, as in a transition, so that two kicks never stack: `bass_swap`), and
the outgoing song leaves in the last quarter.
The key shift is always allowed: overlaid harmony clashes far more than a crossfade does.
"""

from __future__ import annotations

from segue.v1 import mixer_pb2

from .excerpt import Excerpt
from .render import Rendered, render_transition
from .style import DEFAULT_MASHUP_BARS, Params, Style


def render_mashup(
    a: Excerpt, b: Excerpt, config: mixer_pb2.RenderConfig, params: Params
) -> Rendered:
    """The mashup of A and B over `config.mashup_bars` (default DEFAULT_MASHUP_BARS)."""
    bars = config.mashup_bars or DEFAULT_MASHUP_BARS
    return render_transition(a, b, Style.for_mashup(bars, config.style), params)
