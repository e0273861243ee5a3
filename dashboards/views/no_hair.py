"""No-hair: pairs of fine-tunes of one base, inside (ΔW profiles) against outside (attention), with the
bootstrap intervals over windows; pairs chosen here, verdicts only where intervals separate."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import no_hair
from lab.present.figures import no_hair as fig

sel = filters.current()
ui.header("no_hair")
if not ui.has_table(sel, "no_hair", "no_hair",
                    detail="Run `lab analyze A B ... --base BASE --probes no_hair` (two or more fine-tunes of one base, "
                           "with a tokenizer) to add it; `--set no_hair.pairs=a:b` limits it to chosen pairs."):
    st.stop()

# a row joins two checkpoints ('a:b'): the checkpoint, step and role filters do not apply to it
rows = data.read(sel.runs, "no_hair", None, [f for f in sel.filters(checkpoint=False, role=False) if f[0] != "step"])
if rows.empty:
    st.info("No no-hair rows in this selection: widen the filters in the sidebar.")
    st.stop()
rows = no_hair.with_verdicts(rows)
pairs = no_hair.pairs(rows)

st.subheader("Pairs, matched on update size")
st.caption(f"Matched: the larger mean update size u = √(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + ‖W_v‖²) at most {no_hair.MATCH:g}× "
           "the smaller. Inside = mean over cuts of |S_a(ΔW) − S_b(ΔW)| / S_Page, mean over layers.")
st.dataframe(pairs, hide_index=True, width="stretch")

left, mid, right = st.columns(3)
options = list(dict.fromkeys(pairs["pair"]))
matched = [p for p, m in zip(pairs["pair"], pairs["matched"]) if m]
chosen = left.multiselect("Pairs", options, default=options, help="Which pairs to show (the table above says "
                          "which are matched).")
measure = mid.selectbox("Outside measure", list(no_hair.MEASURES), index=no_hair.MEASURES.index("layer_output"))
lengths = sorted(int(L) for L in rows["seq_len"].unique())
L = right.selectbox("Window length L", lengths, index=len(lengths) - 1)
shown = rows[rows["pair"].isin(chosen)]
if shown.empty:
    st.info("Choose at least one pair.")
    st.stop()

ui.show(fig.distances_chart(shown, measure, L))
ui.show(fig.inside_outside_chart(shown, measure))

st.subheader("Verdicts")
st.caption("Per (layer, L) row: closer when the a–b interval lies below both members' intervals from the base, "
           "farther when above both, otherwise not separated.")
for pair in chosen:
    r = shown[(shown["pair"] == pair) & (shown["measure"] == measure)]
    tag = "matched" if pair in matched else "unmatched"
    st.markdown(f"- **{pair}** ({tag}), {measure}: {no_hair.pair_verdict(r)}")
st.dataframe(no_hair.summary(shown), hide_index=True, width="stretch")
with st.expander("no_hair rows"):
    st.dataframe(shown, hide_index=True, width="stretch")
ui.column_help("no_hair")
