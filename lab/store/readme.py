"""Keep the README's column reference equal to the schema: ``python -m lab.store.readme``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lab.store.docs import tables_markdown

START, END = "<!-- tables:start -->", "<!-- tables:end -->"


def with_tables(readme: str) -> str:
    """The README text with the generated column reference between the markers."""
    block = f"{START}\n{tables_markdown()}{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("README.md")
    path.write_text(with_tables(path.read_text()))
