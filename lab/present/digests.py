"""Small per-run summaries of the model-running and unit tables, the same in the report's sections
and on the dashboard's pages: one row per run, checkpoint and L (or merged adapter), means and
extremes over layers, heads, windows and modules.
"""

from __future__ import annotations

import pandas as pd


def attention(summary: pd.DataFrame) -> pd.DataFrame:
    """Per run, checkpoint and L: profiles, how many have each token-cut verdict (reads_past block), the median c and
    Cardy R², the base's median c, and the no-hair numbers (attention TV, entropy difference, the weights' relative
    change); columns a run measured before they existed are left out."""
    aggs = dict(profiles=("head", "size"),
                cardy=("token_verdict", lambda v: int((v == "cardy").sum())),
                volume=("token_verdict", lambda v: int((v == "volume").sum())),
                constant=("token_verdict", lambda v: int((v == "constant").sum())),
                neither=("token_verdict", lambda v: int((v == "neither fits").sum())),
                cardy_c_median=("token_cardy_c", "median"), cardy_r2_median=("token_cardy_r2", "median"),
                base_cardy_c_median=("base_token_cardy_c", "median"),
                attention_tv=("attention_tv", "mean"), entropy_diff=("entropy_diff", "mean"),
                q_rel_change=("q_rel_change", "mean"), v_rel_change=("v_rel_change", "mean"))
    aggs = {name: spec for name, spec in aggs.items() if spec[0] in summary.columns}
    return summary.groupby(["run", "checkpoint", "seq_len"], sort=False).agg(**aggs).reset_index()


def thresholds(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run, checkpoint and L: √ln L, the largest γ_q, γ_k and LoRA term, the largest and median ratio in Hu's
    β = 1 scale and the largest in Alman–Song's, ln L beside the largest logit, and the largest γ/control ratio
    (columns a run measured before they existed are left out)."""
    aggs = dict(threshold=("threshold", "first"), gamma_q_max=("gamma_q", "max"), gamma_k_max=("gamma_k", "max"),
                gamma_lora_max=("gamma_lora", "max"), ratio_max=("ratio", "max"), ratio_median=("ratio", "median"),
                ratio_as_max=("ratio_as", "max"), ln_L=("ln_L", "first"), logit_max=("logit_max", "max"),
                evt_ratio_q_max=("evt_ratio_q", "max"), evt_ratio_k_max=("evt_ratio_k", "max"))
    aggs = {name: spec for name, spec in aggs.items() if spec[0] in rows.columns}
    return rows.groupby(["run", "checkpoint", "seq_len"], sort=False).agg(**aggs).reset_index()


MSU_COLUMNS = ("rank", "effective_units", "effective_units_ratio", "cross_energy", "cos_a_max", "cos_b_max",
               "permutation_error_max")


def msu(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run, checkpoint and role: means over layers of the unit measures."""
    cols = [c for c in MSU_COLUMNS if c in rows.columns]
    return rows.groupby(["run", "checkpoint", "role"], sort=False, dropna=False)[cols].mean().reset_index()


def merge(rows: pd.DataFrame) -> pd.DataFrame:
    """Per merged adapter: method, rank k, modules, and mean errors against the exact weighted sum and the floor."""
    return (rows.groupby(["run", "checkpoint", "method"], sort=False)
                .agg(k=("k", "max"), modules=("module", "size"), rel_fro_error=("rel_fro_error", "mean"),
                     optimal_rel_fro_error=("optimal_rel_fro_error", "mean"),
                     rel_spectral_error=("rel_spectral_error", "mean"), hidden_rel_error=("hidden_rel_error", "first"))
                .reset_index())


def merge_eval(rows: pd.DataFrame) -> pd.DataFrame:
    """Per merged adapter and text set: its held-out loss, the base's, and the best input adapter's (name and loss)."""
    merged = rows[rows["kind"] == "merged"]
    inputs = rows[rows["kind"] == "input"]
    out = []
    for r in merged.itertuples():
        ins = inputs[(inputs["run"] == r.run) & (inputs["merged"] == r.merged) & (inputs["texts"] == r.texts)]
        best = ins.loc[ins["loss"].idxmin()] if not ins.empty else None
        out.append({"run": r.run, "merged": r.merged, "method": r.method, "texts": r.texts, "objective": r.objective,
                    "loss": r.loss, "base_loss": r.base_loss, "best_input": None if best is None else best["checkpoint"],
                    "best_input_loss": None if best is None else best["loss"],
                    "loss_minus_best_input": None if best is None else r.loss - best["loss"]})
    return pd.DataFrame(out)


PAIRS_COLUMNS = ("run", "module", "members", "ranks", "concat_sum_error", "cross_term_error", "cross_term_error_min",
                 "cross_term_error_max", "fedavg_error", "note")


def pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The msu_pairs columns a reader compares: members, ranks, the exact and the averaged errors."""
    return rows[[c for c in PAIRS_COLUMNS if c in rows.columns]]
