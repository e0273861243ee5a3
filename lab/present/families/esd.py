"""The heavy-tailed spectra (weightwatcher's metrics) family (esd): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

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

FAMILY = Family(
    'esd', "Heavy-tailed spectra (WeightWatcher's metrics)", ('esd',), THEORY,
    icon=':material/ssid_chart:',
    hint='Run `lab analyze ... --base BASE --probes esd` to add it.',
)
