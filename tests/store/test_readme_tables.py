"""The README's column reference is the schema's: a renamed or new column breaks this test."""

from pathlib import Path

from lab.store.readme import START, with_tables
from lab.store.schema import TABLES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_column_reference_matches_schema():
    text = README.read_text()
    assert START in text
    assert with_tables(text) == text, "run `python -m lab.store.readme` to regenerate the README's tables"
    for table in TABLES.values():
        for column in table.columns:
            assert f"`{column.name}`" in text
