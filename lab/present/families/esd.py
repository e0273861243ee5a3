"""The heavy-tailed spectra (weightwatcher's metrics) family (esd): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present import load
from lab.present.esd import alpha_pairs, digest, matrices
from lab.present.family import Family
from lab.present.figures import esd as figures
from lab.present.figures.common import Chart
from lab.present.page import Headline, Page
from lab.present.picks import last_checkpoint
from lab.present.sentences import Sentence, Writer, against_full, configurations, per_run, ranking, who
from lab.store import Run

THEORY = (
    'For the base W, the fine-tuned W + ΔW and ΔW itself: the eigenvalues λ = σ² of the matrix (not divided by N, '
    "WeightWatcher's default) and a power law p(λ) ∝ λ^(−α) fitted to their tail as Clauset, Shalizi & Newman (SIAM"
    " Review 51, 661, 2009) fit one and WeightWatcher's default fit='PL' does: xmin, the tail's start, is the "
    'candidate with the smallest Kolmogorov–Smirnov distance D, and α = 1 + n / Σ ln(λ_i/xmin) over the n '
    "eigenvalues ≥ xmin (below 20 eigenvalues WeightWatcher 0.7.7's small-sample rule). A smaller α is a heavier "
    "tail. The columns keep WeightWatcher's details names (alpha, xmin, D, num_pl_spikes, alpha_weighted = α·log10 "
    'λ_max, log_norm, log_spectral_norm, log_alpha_norm, stable_rank), so a notebook written for WeightWatcher '
    'reads them. Controls beside the fit: the Marchenko–Pastur bulk edge of i.i.d. entries of the same mean square '
    'over λ_max (mp_softrank), and the spectrum of the same matrix with its entries shuffled (seeded): its largest '
    'λ (max_rand_eval), the λ above it (num_rand_spikes) and the Jensen–Shannon distance between the two spectra '
    '(rand_distance). The findings read α of W + ΔW beside α of W, module by module: how far fine-tuning moved it.'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run at its last checkpoint: α of W + ΔW beside the base W's, how far fine-tuning moved it (per module
    α(W + ΔW) − α(W)), and the heaviest-tailed modules; with several runs, the median shifts compared."""
    cols = ["run", "checkpoint", "step", "module", "layer", "role", "source", "alpha", "D"]
    labels = {"alpha_tuned": "W + ΔW", "alpha_delta": "ΔW", "alpha_weight": "the base W"}
    out, shifts = [], {}
    for run, rows in per_run(runs, "esd", cols):
        pairs = alpha_pairs(rows)
        ck = last_checkpoint(pairs)
        pairs = pairs[pairs["checkpoint"].astype(str) == ck] if ck is not None else pairs
        subject = next((c for c in labels if pairs[c].notna().any()), None)
        if subject is None:
            continue
        fitted = pairs.dropna(subset=[subject])
        w = Writer("esd", run)
        who(w, run, ck, pairs)
        w.text(f"power-law α of {labels[subject]} has median ").num("alpha_median", fitted[subject].median(), " (")
        w.num("alpha_min", fitted[subject].min(), "–").num("alpha_max", fitted[subject].max(), " over ")
        w.num("modules", len(fitted), " modules)")
        base = pairs["alpha_weight"].dropna()
        if subject != "alpha_weight" and not base.empty:
            w.text(", the base W's ").num("alpha_weight_median", base.median(), " (")
            w.num("alpha_weight_min", base.min(), "–").num("alpha_weight_max", base.max(), ")")
        both = pairs.dropna(subset=["alpha_shift"])
        if not both.empty:
            w.text("; fine-tuning moved α by ").num("alpha_shift_median", both["alpha_shift"].median(), " (median; ")
            w.num("alpha_shift_min", both["alpha_shift"].min(), " to ").num("alpha_shift_max", both["alpha_shift"].max())
            w.text("), lower in ").num("alpha_lower", int((both["alpha_shift"] < 0).sum()), "/")
            w.num("paired", len(both), " modules")
            shifts[run] = float(both["alpha_shift"].median())
        heaviest = fitted.sort_values([subject, "module"]).head(3)
        w.text(f"; heaviest-tailed (smallest α of {labels[subject]}): ")
        for i, r in enumerate(heaviest.itertuples()):
            w.text(("" if i == 0 else ", ") + f"{r.module} ").num(f"alpha[{r.module}]", getattr(r, subject))
        if subject == "alpha_tuned" and pairs["alpha_delta"].notna().any():
            w.text("; ΔW alone: median α ").num("alpha_delta_median", pairs["alpha_delta"].median())
        controls = {source: rows.loc[rows["source"] == source, "alpha"].dropna() for source in ("random", "random_lora")}
        if not controls["random"].empty:  # where 'no structure' sits: the run's seeded controls of the same shapes
            w.text("; the Gaussian controls of the same shapes: median α ").num("alpha_control_median", controls["random"].median())
        if not controls["random_lora"].empty:
            w.text(", untrained LoRA factors of the same ranks: ").num("alpha_lora_control_median",
                                                                        controls["random_lora"].median())
        w.text(".")
        out.append(w.sentence)
    if len(shifts) > 1:
        w = Writer("esd", None)
        ranking(w, "Fine-tuning lowered α most (median α(W + ΔW) − α(W) at the last checkpoint; most negative first)",
                 shifts, "alpha_shift_median", descending=False)
        against_full(w, shifts, configurations(runs))
        out.append(w.sentence)
    return out


def _at_last(rows: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at its last checkpoint (W, W + ΔW and ΔW alike: last_rows would keep ΔW's only)."""
    last = [g[g["checkpoint"].astype(str) == last_checkpoint(g)] for _, g in rows.groupby("run", sort=True)]
    return pd.concat(last, ignore_index=True) if last else rows.iloc[0:0]


def _last_of(run: Run) -> pd.DataFrame:
    """A run's esd rows of W, W + ΔW and ΔW at its last checkpoint (last_rows would keep ΔW's only)."""
    rows = matrices(load.read(run, "esd"))
    ck = last_checkpoint(rows)
    return rows[rows["checkpoint"].astype(str) == ck] if ck is not None else rows


def headline(runs: Sequence[Run]) -> Chart:
    """α of the base W beside W + ΔW by layer, at each run's last checkpoint."""
    rows = [_last_of(r) for r in runs if r.has_table("esd")]
    return figures.alpha_chart(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
                               title="Power-law α by layer: base W and W + ΔW (last checkpoint of each run)")


LAST, EVERY = "last checkpoint of each run", "every checkpoint shown"


def section(page: Page) -> None:
    """α of the base W beside W + ΔW by layer (each run's last checkpoint unless the reader chooses every one), the
    per-module shift over every checkpoint, WeightWatcher's summary per run, checkpoint, matrix and role; the
    per-module α pairs and the rows."""
    rows = matrices(page.read("esd"))
    if rows.empty:
        page.message("No esd rows of W, W + ΔW or ΔW in these runs (or in this selection: widen the filters in the "
                     "sidebar).")
        return
    which = page.choose("Checkpoints in the α figure", [LAST, EVERY], LAST, horizontal=True)
    page.heading("α by layer and role")
    alpha = partial(figures.alpha_chart, _at_last(rows) if which == LAST else rows,
                    title=f"Power-law α by layer: base W and W + ΔW ({which})")
    page.figure(Headline(alpha) if which == LAST else alpha)
    page.heading("How fine-tuning moved α")
    page.figure(partial(figures.shift_chart, rows, title="α(W + ΔW) − α(W) by layer (every checkpoint; earlier ones faint)"))
    page.table("per module: α of W, W + ΔW and ΔW, and the shift α(W + ΔW) − α(W)", alpha_pairs(rows), reference=True)
    page.heading("WeightWatcher's metrics")
    page.table("WeightWatcher's metrics per matrix and role (medians over layers; num_rand_spikes a mean)", digest(rows),
               "alpha: power-law exponent of λ = σ² (smaller: heavier tail); D: its Kolmogorov–Smirnov distance; "
               "mp_softrank: Marchenko–Pastur edge / λ_max; num_rand_spikes: λ above the shuffled matrix's largest")
    page.table("esd rows (WeightWatcher's details column names)", rows, reference=True)


FAMILY = Family(
    'esd', "Heavy-tailed spectra (WeightWatcher's metrics)", ('esd',), THEORY,
    icon=':material/ssid_chart:',
    hint='Run `lab analyze ... --base BASE --probes esd` to add it.',
    findings=findings, headline=headline, section=section, cost=2,
)
