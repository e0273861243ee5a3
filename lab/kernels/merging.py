"""Merging LoRA factors: pure functions from several s_j·B_j·A_j of one module to one merged s·B·A.

Every function takes the adapters' factors of one module (:class:`~lab.deltas.Factors`, any
layout as long as all share it) and weights w_j, and returns merged :class:`Factors` with
scale 1 (the scale is folded into A, so a PEFT config with lora_alpha = r reproduces it exactly).
The target is always the exact weighted sum T = Σ_j w_j·s_j·B_j·A_j; nothing here forms an
m×n matrix.

* :func:`stack`: FLoRA (Wang et al. 2024, "FLoRA: Federated Fine-Tuning Large Language Models with
  Heterogeneous Low-Rank Adaptations", arXiv 2409.05976) stacks the factors,
  [B_1 … B_J]·[w_1 s_1 A_1; …; w_J s_J A_J] = T exactly (concatenation = summation), whatever
  the ranks and scales.
* :func:`linear`: index-wise averaging of the factors, PEFT's ``add_weighted_adapter(...,
  combination_type="linear")`` rule: B = Σ_j √|w_j s_j|·B_j, A = Σ_j sign(w_j s_j)·√|w_j s_j|·A_j.
  B·A = T + Σ_{j≠k} c_j c'_k B_j A_k: the cross terms are FLoRA's "aggregation noise", and they
  depend on the arbitrary order of each adapter's ranks. Equal ranks only.
* :func:`svd`: the best rank-k approximation of T (Eckart–Young) from the stacked factors: thin QR
  of C = [B_j] and of Dᵀ = [w_j s_j A_j]ᵀ, SVD of the small core R_C R_Dᵀ.
* :func:`lego`: LoRA-LEGO (Zhao et al. 2024, "Merging LoRAs like Playing LEGO: Pushing the
  Modularity of LoRA to Extremes Through Rank-Wise Clustering", arXiv 2409.16167, ICLR 2025): pool
  every minimal semantic unit (MSU) of every adapter, cluster them into k units with seeded,
  sign-invariant k-means, rebuild one unit per cluster from its centroid, and apply the paper's
  dual reweighting (parameter reweighting against norm decay, output reweighting against variance
  expansion). Data-free: it reads the adapters' factors and nothing else, never the exact sum T.
* :func:`lego_oracle`: the lab's earlier variant (``--method lego-oracle``), NOT the paper's: each
  centroid times its cluster size n_c, and the output scale γ = ⟨M, T⟩/‖M‖² least-squares fitted
  to the exact sum T that its error is then measured against (an oracle the paper does not have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Factors
from lab.errors import LabError
from lab.kernels.factored import core_singular_values
from lab.kernels.norms import difference_norms

METHODS = ("stack", "linear", "svd", "lego", "lego-oracle")


class MergeError(LabError):
    """Adapters or options that a merge cannot use (ranks, weights, k)."""


def _check(factors: list[Factors], weights: list[float]) -> None:
    if len(factors) != len(weights):
        raise MergeError(f"{len(weights)} weights for {len(factors)} adapters")
    if not factors:
        raise MergeError("nothing to merge")
    shapes = {f.shape for f in factors}
    if len(shapes) > 1:
        raise MergeError(f"the adapters update matrices of different shapes {sorted(shapes)}")


def stack(factors: list[Factors], weights: list[float]) -> Factors:
    """[B_1 … B_J]·[w_1 s_1 A_1; …]: exactly Σ_j w_j s_j B_j A_j, rank Σ r_j (FLoRA's stacking)."""
    _check(factors, weights)
    B = np.concatenate([f.B for f in factors], axis=1)
    A = np.concatenate([w * f.scale * f.A for f, w in zip(factors, weights)], axis=0)
    return Factors(B, A, 1.0)


def linear(factors: list[Factors], weights: list[float]) -> Factors:
    """PEFT's "linear" rule: B = Σ √|w_j s_j| B_j, A = Σ sign(w_j s_j)·√|w_j s_j| A_j (equal ranks only)."""
    _check(factors, weights)
    ranks = sorted({f.rank_bound for f in factors})
    if len(ranks) > 1:
        raise MergeError(f"linear (index-wise) averaging needs equal ranks, got r = {', '.join(map(str, ranks))}; use stack, svd or lego")
    c = [w * f.scale for f, w in zip(factors, weights)]
    B = sum(np.sqrt(abs(cj)) * f.B for cj, f in zip(c, factors))
    A = sum(np.sign(cj) * np.sqrt(abs(cj)) * f.A for cj, f in zip(c, factors))
    return Factors(B, A, 1.0)


def fedavg(factors: list[Factors]) -> Factors:
    """FedAvg's index-wise mean (FLoRA's baseline): B̄ = (1/J)·Σ_j B_j, Ā = (1/J)·Σ_j s_j·A_j (equal ranks only).

    B̄·Ā − T = (1/J²)·Σ_{j,k} s_k B_j A_k − (1/J)·Σ_j s_j B_j A_j: zero for identical adapters,
    FLoRA's aggregation noise otherwise. (PEFT's :func:`linear` with weights 1/J is not this: for
    J identical adapters it gives J times the update.)
    """
    ranks = sorted({f.rank_bound for f in factors})
    if len(ranks) > 1:
        raise MergeError(f"index-wise averaging needs equal ranks, got r = {', '.join(map(str, ranks))}")
    J = len(factors)
    return Factors(sum(f.B for f in factors) / J, sum(f.scale * f.A for f in factors) / J, 1.0)


def _stacked_svd(target: Factors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, σ, Vᵀ) of s·B·A with U (m×q), Vᵀ (q×n), q = min(r, m, n), from QR of both factors."""
    Qb, Rb = np.linalg.qr(target.B)
    Qa, Ra = np.linalg.qr(target.A.T)
    u, sigma, vt = np.linalg.svd(target.scale * Rb @ Ra.T, full_matrices=False)
    return Qb @ u, sigma, vt @ Qa.T


def svd(factors: list[Factors], weights: list[float], k: int) -> Factors:
    """The best rank-k approximation of Σ_j w_j s_j B_j A_j, split as (U_k √Σ_k)(√Σ_k V_kᵀ)."""
    target = stack(factors, weights)
    _check_k(k, target.rank_bound)
    U, sigma, Vt = _stacked_svd(target)
    k_eff = min(k, sigma.size)
    root = np.sqrt(sigma[:k_eff])
    B = np.zeros((U.shape[0], k))
    A = np.zeros((k, Vt.shape[1]))
    B[:, :k_eff] = U[:, :k_eff] * root  # ranks beyond min(m, n) stay zero units
    A[:k_eff] = root[:, None] * Vt[:k_eff]
    return Factors(B, A, 1.0)


def _check_k(k: int, pooled: int) -> None:
    if k < 1:
        raise MergeError(f"--rank {k}: must be at least 1")
    if k > pooled:
        raise MergeError(f"--rank {k} is larger than the {pooled} pooled units of the adapters")


# ---- LoRA-LEGO ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clusters:
    """Sign-invariant k-means of unit vectors: labels, signs (±1 aligning each unit to its centroid)."""

    labels: np.ndarray
    signs: np.ndarray
    inertia: float


def sign_invariant_kmeans(X: np.ndarray, k: int, seed: int = 0, restarts: int = 4, iterations: int = 100) -> Clusters:
    """k-means of the rows of X where x and −x are the same point (a unit b·aᵀ = (−b)·(−a)ᵀ).

    Distance to a centroid μ: min(‖x − μ‖², ‖x + μ‖²) = ‖x‖² + ‖μ‖² − 2|⟨x, μ⟩|; each x joins the
    centroid it is nearest to up to sign, flipped by sign⟨x, μ⟩, and centroids are means of the
    flipped members. Seeded k-means++ starts; the restart with the smallest inertia wins.
    """
    n = X.shape[0]
    if k >= n:  # every unit its own cluster (k = n: the merge is the stack)
        return Clusters(np.arange(n), np.ones(n), 0.0)
    rng = np.random.default_rng(seed)
    sq = (X * X).sum(axis=1)
    best = None
    for _ in range(restarts):
        centers = [X[rng.integers(n)]]
        for _ in range(1, k):
            C = np.array(centers)
            d = np.maximum(sq[:, None] + (C * C).sum(axis=1)[None] - 2 * np.abs(X @ C.T), 0).min(axis=1)
            p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
            centers.append(X[rng.choice(n, p=p)])
        C = np.array(centers)
        labels = None
        for _ in range(iterations):
            dots = X @ C.T
            dist = sq[:, None] + (C * C).sum(axis=1)[None] - 2 * np.abs(dots)
            new = dist.argmin(axis=1)
            signs = np.where(dots[np.arange(n), new] < 0, -1.0, 1.0)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = labels == c
                if members.any():
                    C[c] = (signs[members, None] * X[members]).mean(axis=0)
                else:  # an empty cluster takes the unit farthest from its centroid
                    far = dist[np.arange(n), labels].argmax()
                    C[c] = X[far]
        inertia = float(np.maximum(dist[np.arange(n), labels], 0).sum())
        if best is None or inertia < best.inertia:
            best = Clusters(labels.copy(), signs.copy(), inertia)
    return best


def pooled_units(factors: list[Factors], weights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every unit w_j s_j·b·aᵀ as balanced factors (b', a'), ‖b'‖ = ‖a'‖, b'·a'ᵀ = w_j s_j·b·aᵀ.

    Balancing removes the b ↔ a rescaling freedom (b·aᵀ = (λb)(a/λ)ᵀ) so that units compare by
    direction and size only; the sign of w_j s_j goes into b'.
    """
    bs, as_ = [], []
    for f, w in zip(factors, weights):
        c = w * f.scale
        nb, na = np.linalg.norm(f.B, axis=0), np.linalg.norm(f.A, axis=1)
        for i in range(f.rank_bound):
            if nb[i] == 0 or na[i] == 0 or c == 0:
                continue  # a zero unit carries nothing
            mag = np.sqrt(abs(c) * nb[i] * na[i])
            bs.append(np.sign(c) * f.B[:, i] / nb[i] * mag)
            as_.append(f.A[i] / na[i] * mag)
    m, n = factors[0].shape
    return (np.array(bs).reshape(-1, m), np.array(as_).reshape(-1, n))


def inner(x: Factors, y: Factors) -> float:
    """⟨s_x B_x A_x, s_y B_y A_y⟩_F = s_x s_y Σ (B_xᵀ B_y)∘(A_x A_yᵀ), from r×r products."""
    return float(x.scale * y.scale * ((x.B.T @ y.B) * (x.A @ y.A.T)).sum())


def _clustered_units(factors: list[Factors], weights: list[float], k: int, seed: int):
    """The pooled units (B', A'), their rows side by side X = [B' A'] and X's sign-invariant k-means
    clusters: what both LEGO variants start from."""
    Bp, Ap = pooled_units(factors, weights)
    _check_k(k, Bp.shape[0])
    X = np.concatenate([Bp, Ap], axis=1)
    return Bp, Ap, X, sign_invariant_kmeans(X, k, seed)


def lego(factors: list[Factors], weights: list[float], k: int, seed: int = 0, reweight: bool = True,
         output_reweight: bool | None = None, norm: float = 2) -> Factors:
    """LoRA-LEGO as its paper defines it: k units from k-means over the pooled MSUs, dual reweighting.

    What the paper says (arXiv 2409.16167, abstract): "This framework conducts rank-wise parameter
    clustering by grouping MSUs from different LoRAs into k clusters. The centroid of each cluster
    serves as a representative MSU, enabling the assembly of a merged LoRA with an adjusted rank
    of k. Additionally, we apply a dual reweighting strategy to optimize the scale of the merged
    LoRA." Its dual reweighting is, in the words of a published review of the paper (liner.com),
    "parameter reweighting for norm decay and output reweighting for variance expansion". The
    section of the paper with the equations could not be retrieved here; the two formulas below are
    those of the public reimplementation found (a ``LoRA_LEGO(..., use_param_reweighting, use_output_reweighting)``
    function in a KnOTS merging code base, found through the code search index, which did not name its
    repository), with the lab's choices marked:

    1. MSUs: unit i of adapter j is x = [b'; a'], the balanced factors of c_j·b·aᵀ with
       c_j = J·w_j·s_j (:func:`pooled_units`; lab choice: balancing ‖b'‖ = ‖a'‖ removes the b ↔ a
       rescaling freedom, and J·w_j makes the default weights 1/J pool the units as trained,
       as the paper pools them).
    2. Clustering: :func:`sign_invariant_kmeans` (lab choice: x and −x are one unit).
    3. Centroid of cluster C: μ = (1/|C|)·Σ_{x∈C} x (sign-aligned), split into (b̄, ā).
    4. Parameter reweighting (against "norm decay"; the lab's reading: averaging members that are
       not parallel shrinks the centroid): μ ← μ·((1/|C|)·Σ_{x∈C} ‖x‖) / ‖μ‖, the members' mean norm (``norm``: 2, the
       Euclidean norm, by default; ``inf``, the largest entry, is what the reimplementation uses).
    5. The merged update is Σ_c b̄_c·ā_cᵀ: one centroid per cluster, NOT multiplied by |C|.
    6. Output reweighting (against "variance expansion"; the lab's reading: a sum of k units has an
       output variance that grows with k): the merged update is multiplied by √(r/k), r the adapters' rank (lab choice
       for heterogeneous ranks: r = the mean rank r̄ of the adapters that have this module).

    Nothing here forms or reads T = Σ_j w_j s_j B_j A_j. With identical adapters and k = r each
    cluster holds J copies of one unit and the merge is exactly the adapter (the mean T).

        >>> f = Factors(np.eye(3)[:, :1], np.eye(3)[:1], 1.0)
        >>> float(lego([f, f], [0.5, 0.5], k=1).to_dense()[0, 0])  # two copies of one unit: the unit
        1.0
    """
    _check(factors, weights)
    output_reweight = reweight if output_reweight is None else output_reweight
    J = len(factors)
    Bp, Ap, X, clusters = _clustered_units(factors, [J * w for w in weights], k, seed)
    m = Bp.shape[1]
    B = np.zeros((m, k))
    A = np.zeros((k, Ap.shape[1]))
    for c in range(k):
        members = clusters.labels == c
        if not members.any():
            continue
        mu = (clusters.signs[members, None] * X[members]).mean(axis=0)
        if reweight:
            size = np.linalg.norm(mu, ord=norm)
            if size > 0:
                mu = mu * np.linalg.norm(X[members], ord=norm, axis=1).mean() / size
        B[:, c], A[c] = mu[:m], mu[m:]
    if output_reweight:
        A *= np.sqrt(np.mean([f.rank_bound for f in factors]) / k)
    return Factors(B, A, 1.0)


def lego_oracle(factors: list[Factors], weights: list[float], k: int, seed: int = 0, reweight: bool = True,
                output_reweight: bool | None = None) -> Factors:
    """The lab's earlier LEGO variant (``--method lego-oracle``): uses the exact sum T, unlike the paper.

    Units pooled with w_j·s_j (:func:`pooled_units`), clustered as in :func:`lego`; cluster c with
    n_c members becomes n_c·b̄_c·ā_cᵀ with b̄_c and ā_c each rescaled to its members' mean norm
    (``reweight``), and the merged update is multiplied by γ = ⟨M, T⟩_F / ‖M‖²_F
    (``output_reweight``), the least-squares scale against the exact weighted sum T. Fitting γ to
    T is an oracle: T is the target its error is measured against, so its rel_fro_error is not a
    fair comparison with data-free merges. Kept to show what that oracle buys.
    """
    _check(factors, weights)
    output_reweight = reweight if output_reweight is None else output_reweight
    Bp, Ap, X, clusters = _clustered_units(factors, weights, k, seed)
    m = Bp.shape[1]
    B = np.zeros((m, k))
    A = np.zeros((k, Ap.shape[1]))
    for c in range(k):
        members = clusters.labels == c
        if not members.any():
            continue
        s = clusters.signs[members, None]
        b, a = (s * Bp[members]).mean(axis=0), (s * Ap[members]).mean(axis=0)
        if reweight:
            for v, target in ((b, np.linalg.norm(Bp[members], axis=1).mean()), (a, np.linalg.norm(Ap[members], axis=1).mean())):
                norm = np.linalg.norm(v)
                if norm > 0:
                    v *= target / norm
        B[:, c], A[c] = b, members.sum() * a
    merged = Factors(B, A, 1.0)
    if output_reweight:
        target = stack(factors, weights)
        mm = inner(merged, merged)
        gamma = inner(merged, target) / mm if mm > 0 else 1.0
        merged = Factors(B, gamma * A, 1.0)
    return merged


# ---- errors -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergeErrors:
    """How far a merge is from the exact weighted sum T (relative to T's norms), and the optimum."""

    rel_fro: float  # ‖M − T‖_F / ‖T‖_F
    rel_spectral: float  # ‖M − T‖_2 / ‖T‖_2
    optimal_rel_fro: float  # best rank-k: √(Σ_{i>k} σ_i²) / ‖T‖_F (Eckart–Young)
    optimal_rel_spectral: float  # σ_{k+1} / σ_1
    target_fro: float
    k: int


def errors(merged: Factors, target: Factors) -> MergeErrors:
    """The errors of ``merged`` against ``target`` from QR of the stacked factors, and the rank-k optimum."""
    fro, spec = difference_norms([merged.scale * merged.B, -target.scale * target.B], [merged.A, target.A])
    sigma = core_singular_values(target)
    t_fro, t_spec = float(np.sqrt((sigma ** 2).sum())), float(sigma[0]) if sigma.size else 0.0
    k = merged.rank_bound
    tail = sigma[k:]
    opt_fro = float(np.sqrt((tail ** 2).sum()))
    opt_spec = float(tail[0]) if tail.size else 0.0
    rel = (lambda x, d: x / d if d > 0 else (0.0 if x == 0 else float("inf")))
    return MergeErrors(rel(fro, t_fro), rel(spec, t_spec), rel(opt_fro, t_fro), rel(opt_spec, t_spec), t_fro, k)
