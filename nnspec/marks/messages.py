"""Messages of drawing charts: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from nnspec.text import names


def needs_graph() -> str:
    return "'graph' draws the architecture: use it with the 'graph' source (query: graph)"


def note_first_tiles(keep: int, total: int) -> str:
    return f"first {keep} of {total} tiles (mark budget)"


def note_first_sequence() -> str:
    return "the first sequence of the batch (index to pick another, e.g. [3])"


def note_rows_sum() -> str:
    return "each row (a query position) sums to 1 over the keys"


def needs_table(mark: str, columns) -> str:
    return f"'{mark}' needs a table with columns {names(columns)}"


def unknown_column(mark: str, name: str, columns) -> str:
    return f"'{mark}': no column '{name}' in this view's data (columns: {names(columns, 12)})"


def over_budget(mark: str, n: int, budget: int) -> str:
    return f"'{mark}' would draw {n} marks, over this view's budget of {budget}"


def needs_1d(mark: str, layer: str, shape) -> str:
    return f"'{mark}' draws one value per layer or 1-D tensors; {layer} has shape {tuple(shape)}"


def needs_1d_hint() -> str:
    return "reduce it first, e.g. '| mean', '| norm' or '| mean(dim=0)'"


def note_block_means_1d(blocks: int, total: int) -> str:
    return f"{blocks} block means of {total} values"


def note_nonfinite_cells(n: int) -> str:
    return f"{n} cells hold NaN/Inf (drawn black)"


def note_nonfinite_values(n: int) -> str:
    return f"{n} NaN/Inf not drawn (counted)"


def note_whiskers() -> str:
    return "whiskers at min and max"


def series_marks(mark: str) -> str:
    return f"'{mark}' cannot draw a view over steps: use line (values, stats as bands), ridgeline (histograms) or table"


def ridgeline_needs_histograms() -> str:
    return "ridgeline draws one histogram per recorded step, and this view has no histograms over steps"


def ridgeline_hint() -> str:
    return "write e.g. 'weights of fc1 over steps | histogram(bins=30) | ridgeline'"


def note_ridges(shown: int, total: int) -> str:
    return f"{shown} of {total} recorded steps drawn (evenly spaced, first and last included)"


def note_image(shape) -> str:
    return f"{shape[0]}×{shape[1]} drawn as an image, one pixel per value"


def note_image_blocks(shape, out_shape, block, what: str) -> str:
    """``what``: ``execute.messages.BLOCK_AGG_TEXT``'s words for the statistic."""
    return (
        f"{shape[0]}×{shape[1]} drawn as {out_shape[0]}×{out_shape[1]} blocks of {block[0]}×{block[1]} "
        f"(image budget), {what}"
    )


def note_image_tiles(k: int, shape, block, what: str) -> str:
    tiles = f"{k} tiles of {shape[0]}×{shape[1]}"
    if tuple(block) == (1, 1):
        return f"{tiles} drawn as an image, one pixel per value"
    return f"{tiles} drawn as blocks of {block[0]}×{block[1]} (image budget), {what}"


def note_filter_matrix(shape, block, what: str) -> str:
    o, i, h, w = shape
    tiles = f"all {o * i} filters of {h}×{w} ({o} output × {i} input channels)"
    if tuple(block) == (1, 1):
        return f"{tiles} drawn as one image, one pixel per value"
    return f"{tiles} drawn as blocks of {block[0]}×{block[1]} (image budget), {what}"


def note_nonfinite_pixels(n: int, colour: str) -> str:
    return f"{n} NaN/Inf values drawn {colour}"


def scheme_not_continuous(scheme: str, known) -> str:
    return f"an image is coloured by a continuous scheme; '{scheme}' is not one (try {names(known, 8)})"


def unknown_scheme(mark: str, scheme: str, known) -> str:
    shown = scheme if len(scheme) <= 40 else scheme[:37] + "..."
    return f"'{mark}': no colour scheme '{shown}' (Vega's schemes: {names(known, 100)}; most take a -3 … -11 suffix)"
