"""Token cuts of attention matrices: the entropy of the cross blocks at every cut ℓ, and the laws fitted over ℓ.

For an L×L attention probability matrix P (row i: how query i reads keys 0 … L−1) and a cut after
ℓ tokens (ℓ = 1 … L−1), two cross blocks:

* ``reads_past``   C = P[ℓ:, :ℓ]: queries at positions ≥ ℓ reading keys before ℓ (every model),
* ``reads_future`` C = P[:ℓ, ℓ:]: queries before ℓ reading keys at or after ℓ (bidirectional
  encoders only: a causal model's block is exactly zero).

With σ_i the singular values of C and p_i = σ_i²/Σσ², the block's entropy S(ℓ) = −Σ p_i ln p_i
(nats), its Rényi-2 entropy −ln Σ p_i², its numerical rank #{p_i > RANK_TOL} and its share of the
attention mass ΣC/ΣP. These are the "token-token correlations" across the cut that arXiv
2601.06788 ("Artificial Entanglement in the Fine-Tuning of Large Language Models") reads as
entanglement; the digit-chain profile of :mod:`lab.probes.attention` cuts index digits instead.

The p_i are the eigenvalues of the Gram matrix of C's smaller side (min(ℓ, L−ℓ) square) divided
by ‖C‖_F², one batched float64 symmetric eigensolve per cut for all heads and both blocks.

Over ℓ in tokens three least-squares laws (:func:`fit_token_laws`):

* Cardy's chord   S = a + (c/3)·ln((L/π)·sin(πℓ/L))   (area law with a logarithmic correction; c reported),
* volume law      S = a + b·min(ℓ, L−ℓ),
* constant        S = a   (a saturating area law),

each with R², the residual standard error √(RSS/(n − k)) and AIC = n·ln(RSS/n) + 2(k + 1) (k fitted
coefficients, +1 for the noise variance). The verdict is Cardy's or the volume law when its AIC is
lower than both other laws' by more than MIN_DELTA_AIC and its R² ≥ MIN_R2. The constant is nested
in both (its AIC can never be lower by more than 2): it is the verdict when neither other law
lowers the AIC by more than MIN_DELTA_AIC and it fits (its R² is 0 by definition: a residual
standard error at most CONSTANT_MAX_CV of |a|). Otherwise the verdict is "neither fits" — never
the winner of poor fits.

    >>> import numpy as np
    >>> L = 64; ell = np.arange(1, L)
    >>> fit_token_laws(ell, L, 0.2 + (1.5 / 3) * chord_log(ell, L)).cardy.c   # doctest: +ELLIPSIS
    1.5...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCKS = ("reads_past", "reads_future")
RANK_TOL = 1e-12  # on p_i = σ_i²/‖C‖_F²: σ_i above 1e-6·‖C‖_F, far above the Gram's rounding (≈ m·1e-16)
MIN_R2 = 0.8
MIN_DELTA_AIC = 2.0
CONSTANT_MAX_CV = 0.05
MIN_POINTS = 5  # a three-law comparison over fewer cuts has no verdict
NEITHER = "neither fits"


def token_cuts(L: int, max_cuts: int = 0) -> np.ndarray:
    """The cuts ℓ (tokens before the cut): every ℓ = 1 … L−1, or with ``max_cuts`` > 0 at most that many,
    evenly spaced and symmetric under ℓ ↔ L − ℓ (always including 1 and L − 1)."""
    every = np.arange(1, L)
    if max_cuts <= 0 or max_cuts >= L - 1:
        return every
    half = np.unique(np.round(np.linspace(1, L / 2, (max_cuts + 1) // 2)).astype(int))
    return np.unique(np.concatenate([half, L - half]))


@dataclass(frozen=True)
class TokenCutSpectra:
    """Per block, head and cut (arrays (blocks, heads, cuts)): entropy, Rényi-2, numerical rank, mass share."""

    blocks: tuple[str, ...]
    cuts: np.ndarray
    entropy: np.ndarray
    renyi2: np.ndarray
    rank: np.ndarray
    mass: np.ndarray


def token_cut_spectra(P: np.ndarray, cuts: np.ndarray | None = None, causal: bool = False) -> TokenCutSpectra:
    """The cross-block entropies of a stack of attention matrices P (heads, L, L) at the given cuts.

    ``causal``: only the ``reads_past`` block (a causal model's ``reads_future`` block is zero).
    A block whose entries are all zero has NaN entropies, rank 0 and mass 0.
    """
    import torch  # the model that produced P has loaded it already

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched solves: one thread (see lab.probes.attention.head_profiles)
    try:
        return _spectra(torch, np.asarray(P), cuts, causal)
    finally:
        torch.set_num_threads(before)


def _spectra(torch, P: np.ndarray, cuts, causal: bool) -> TokenCutSpectra:
    P = torch.as_tensor(P, dtype=torch.float64)
    if P.ndim == 2:
        P = P[None]
    H, L, _ = P.shape
    cuts = np.arange(1, L) if cuts is None else np.asarray(cuts, dtype=int)
    blocks = BLOCKS[:1] if causal else BLOCKS
    nb = len(blocks)
    shape = (nb, H, len(cuts))
    entropy, renyi2 = np.full(shape, np.nan), np.full(shape, np.nan)
    rank, mass = np.zeros(shape, dtype=np.int64), np.zeros(shape)
    total = P.sum(dim=(1, 2)).numpy()
    for j, ell in enumerate(cuts):
        ell = int(ell)
        parts = [P[:, ell:, :ell]] + ([] if causal else [P[:, :ell, ell:]])
        grams = []
        for C in parts:  # the Gram of the smaller side: its eigenvalues are the σ_i²
            grams.append(C.transpose(1, 2) @ C if C.shape[2] <= C.shape[1] else C @ C.transpose(1, 2))
        g = torch.cat(grams) if nb > 1 else grams[0]
        norm2 = torch.stack([(C * C).sum(dim=(1, 2)) for C in parts]).numpy()  # (blocks, H): ‖C‖_F²
        lam = np.clip(torch.linalg.eigvalsh(g).numpy(), 0.0, None).reshape(nb, H, -1)  # PSD: rounding below 0 is 0
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lam / np.where(norm2 > 0, norm2, np.nan)[..., None]
            s = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
            entropy[:, :, j] = np.where(norm2 > 0, s, np.nan)
            renyi2[:, :, j] = np.where(norm2 > 0, -np.log((p * p).sum(axis=-1)), np.nan)
        rank[:, :, j] = np.where(norm2 > 0, (np.nan_to_num(p) > RANK_TOL).sum(axis=-1), 0)
        mass[:, :, j] = np.stack([C.sum(dim=(1, 2)).numpy() for C in parts]) / total
    return TokenCutSpectra(blocks, cuts, entropy, renyi2, rank, mass)


# ---- the laws over ℓ ---------------------------------------------------------------------------

def chord_log(ell: np.ndarray, L: int) -> np.ndarray:
    """ln((L/π)·sin(πℓ/L)): the log chord length of Cardy's formula for a cut after ℓ of L tokens."""
    return np.log((L / np.pi) * np.sin(np.pi * np.asarray(ell, np.float64) / L))


@dataclass(frozen=True)
class LawFit:
    """One least-squares law: coefficients (a, slope), R², residual standard error, AIC, points n."""

    law: str
    a: float
    slope: float  # Cardy: c/3; volume: b; constant: NaN
    r2: float
    rse: float
    aic: float
    n: int

    @property
    def c(self) -> float:
        """Cardy's central charge c = 3·slope (meaningful for the Cardy law)."""
        return 3.0 * self.slope

    def fits(self) -> bool:
        """R² ≥ MIN_R2; for the constant, residual standard error ≤ CONSTANT_MAX_CV·|a|."""
        if self.law == "constant":
            return bool(np.isfinite(self.rse) and self.rse <= CONSTANT_MAX_CV * abs(self.a))
        return bool(np.isfinite(self.r2) and self.r2 >= MIN_R2)


def _law(law: str, x: np.ndarray | None, y: np.ndarray) -> LawFit:
    n = y.size
    k = 1 if x is None else 2
    if n <= k:
        return LawFit(law, np.nan, np.nan, np.nan, np.nan, np.nan, n)
    if x is None:
        a, slope, fitted = float(y.mean()), np.nan, np.full(n, y.mean())
    else:
        if np.ptp(x) == 0.0:
            return LawFit(law, np.nan, np.nan, np.nan, np.nan, np.nan, n)
        design = np.column_stack([np.ones(n), x])
        (a, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
        fitted = design @ np.array([a, slope])
    rss = float(((y - fitted) ** 2).sum())
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0.0 else np.nan
    rse = float(np.sqrt(rss / (n - k)))
    # a perfect fit (RSS = 0) would have AIC −∞: floor RSS/n at the float64 rounding of the values
    floor = (np.finfo(np.float64).eps * max(float(np.abs(y).max()), 1e-300)) ** 2
    aic = n * np.log(max(rss / n, floor)) + 2 * (k + 1)
    return LawFit(law, float(a), float(slope), float(r2), rse, float(aic), n)


@dataclass(frozen=True)
class TokenLaws:
    """The three fits of one profile, the law with the lowest AIC, its margin over the next, and the verdict."""

    cardy: LawFit
    volume: LawFit
    constant: LawFit
    best: str | None
    margin: float  # AIC of the runner-up − AIC of the best
    verdict: str | None  # the best law's name, NEITHER, or None (too few cuts)

    @property
    def laws(self) -> tuple[LawFit, LawFit, LawFit]:
        return self.cardy, self.volume, self.constant


def fit_token_laws(ell: np.ndarray, L: int, entropy: np.ndarray) -> TokenLaws:
    """Fit Cardy's chord, the volume law and a constant to S(ℓ) over the finite points, ℓ in tokens."""
    ell = np.asarray(ell, np.float64)
    y = np.asarray(entropy, np.float64)
    ok = np.isfinite(y)
    ell, y = ell[ok], y[ok]
    laws = (_law("cardy", chord_log(ell, L), y), _law("volume", np.minimum(ell, L - ell), y), _law("constant", None, y))
    aics = np.array([f.aic for f in laws])
    if y.size < MIN_POINTS or not np.isfinite(aics).all():
        return TokenLaws(*laws, None, np.nan, None)
    order = np.argsort(aics, kind="stable")
    best = laws[order[0]]
    margin = float(aics[order[1]] - aics[order[0]])
    return TokenLaws(*laws, best.law, margin, _verdict(laws))


def _verdict(laws: tuple[LawFit, LawFit, LawFit]) -> str:
    cardy, volume, constant = laws
    for law, other in ((cardy, volume), (volume, cardy)):
        if law.aic < min(other.aic, constant.aic) - MIN_DELTA_AIC:
            return law.law if law.fits() else NEITHER
    if min(cardy.aic, volume.aic) >= constant.aic - MIN_DELTA_AIC and constant.fits():
        return constant.law
    return NEITHER


def monotone_halves(ell: np.ndarray, L: int, entropy: np.ndarray, tol: float = 1e-12) -> tuple[bool, bool]:
    """(S non-decreasing over the cuts ℓ ≤ L/2, S non-increasing over ℓ ≥ L/2), up to ``tol`` nats."""
    ell, s = np.asarray(ell), np.asarray(entropy, np.float64)
    left, right = s[ell <= L / 2], s[ell >= L / 2]
    return bool(np.all(np.diff(left) >= -tol)), bool(np.all(np.diff(right) <= tol))
