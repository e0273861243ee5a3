"""Small tables already formatted as text, for the report's formats and the dashboard's tables
alike: numbers to four significant digits, missing values empty."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


def fmt(value) -> str:
    """A table cell: 4 significant digits for floats, empty for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


@dataclass
class TableBlock:
    """A small table already formatted as strings (the formats escape or encode them)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""

    @classmethod
    def from_frame(cls, title: str, frame: pd.DataFrame, caption: str = "", max_rows: int = 60) -> "TableBlock":
        """The first ``max_rows`` rows of ``frame`` as text; the caption says when rows were left out."""
        shown = frame.head(max_rows)
        rows = [[fmt(v) for v in row] for row in shown.itertuples(index=False)]
        if len(frame) > max_rows:
            caption = f"{caption} (first {max_rows} of {len(frame)} rows)".strip()
        return cls(title, [str(c) for c in frame.columns], rows, caption)

    def frame(self) -> pd.DataFrame:
        """The formatted cells as a DataFrame of strings (for ``st.dataframe``)."""
        return pd.DataFrame(self.rows, columns=self.header)
