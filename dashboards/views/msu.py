"""MSU and merges: LoRA-LEGO's minimal semantic units and merged adapters."""

from dashboards import filters, pending, ui

sel = filters.current()
ui.header("msu")
pending.page(sel, "msu", "msu", None)
