"""Attention (external entanglement): base vs tuned attention profiles and their fits."""


from dashboards import filters, pending, ui
from lab.report.figures import attention as fig

sel = filters.current()
ui.header("attention")
pending.page(sel, "attention", "attention_entanglement", fig.profile_chart)
