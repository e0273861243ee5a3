"""The rank spectra family (spectra, singular_values): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'All singular values σ_i of ΔW. Stable rank ‖ΔW‖_F²/‖ΔW‖_2²; effective rank exp(H(σ/Σσ)) (Roy & Vetterli, '
    'EUSIPCO 2007) and its σ² variant exp(H(σ²/Σσ²)), which equals exp of the row|column entanglement entropy; the '
    'ranks holding 90 % and 99 % of ‖ΔW‖_F² (how far the update could be compressed after training); rank '
    "utilisation = effective rank / r for adapters; with a base, the overlap of ΔW's top singular subspaces with "
    "W's and the count of 'intruder' directions."
)

FAMILY = Family(
    'spectra', 'Rank spectra', ('spectra', 'singular_values'), THEORY,
    icon=':material/bar_chart:',
    hint='Run `lab analyze ... --probes spectra` to add it.',
)
