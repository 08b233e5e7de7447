"""Plain-text tables for terminals, cron mails and CI logs (no dependency, no colour).

The one table formatter: ``format_table`` aligns rows of strings; ``format_frame``
(pandas) and ``format_arrow`` (query results) turn their values into cells and
right-align the numeric columns.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> str:
    """Aligned columns under a header and a rule.

    Args:
        right: per column, whether it is right-aligned (default: the first column left, the others right).
    """
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(len(header))]
    align = list(right) if right is not None else [i > 0 for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [(row[i] if i < len(row) else "") for i in range(len(widths))]
        return "  ".join(p.rjust(w) if r else p.ljust(w) for p, w, r in zip(parts, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *[line(r) for r in cells[1:]]])


def format_frame(df: "pandas.DataFrame", *, digits: int = 3, missing: str = "-") -> str:
    """A DataFrame as a table: numbers right-aligned to ``digits`` significant digits, NaN as ``missing``."""
    if df.empty:
        return "(no rows)"
    rows = [[cell(v, digits=digits, missing=missing) for v in row] for row in df.itertuples(index=False)]
    return format_table([str(c) for c in df.columns], rows, right=[df[c].dtype.kind in "iufb" for c in df.columns])


def format_arrow(table: "pa.Table", *, digits: int = 6, missing: str = "NULL") -> str:
    """An Arrow table (all rows: add LIMIT for big results), numeric columns right-aligned."""
    import pyarrow as pa

    columns = [[cell(v, digits=digits, missing=missing) for v in table.column(i).to_pylist()] for i in range(table.num_columns)]
    rows = [list(r) for r in zip(*columns)] if columns else []
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types]
    return format_table(table.column_names, rows, right=numeric)


def cell(value: Any, *, digits: int = 3, missing: str = "-") -> str:
    """One value as a table shows it: floats to ``digits`` significant digits, None/NaN as ``missing``, one line."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** max(digits + 2, 5) else f"{value:.{digits}e}"
    return str(value).replace("\n", " ")


__all__ = ["cell", "format_arrow", "format_frame", "format_table"]
