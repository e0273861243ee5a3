"""The column reference as markdown, generated from the schema (the README embeds it)."""

from __future__ import annotations

from lab.store.schema import ID_COLUMNS, TABLES


def tables_markdown() -> str:
    """Markdown: the identifying columns once, then each table's own columns with meanings."""
    import lab.probes  # noqa: F401  (probe modules declare their tables on import)

    ids = {c.name for c in ID_COLUMNS}
    lines = ["Every table starts with the identifying columns:", "", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.dtype} | {c.description} |" for c in ID_COLUMNS]
    for table in sorted(TABLES.values(), key=lambda t: t.order):
        lines += ["", f"**`{table.name}`**: {table.description}", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.description} |" for c in table.columns if c.name not in ids]
    return "\n".join(lines) + "\n"
