"""External artificial entanglement: entropy profiles of attention matrices, and "no-hair" against the base.

For each layer and head, the attention probability matrix P (L×L, rows sum to 1) of one window
(:mod:`lab.probes.windows`) is measured two ways, named apart:

* **token cuts** (table ``attention_token_cuts``, :mod:`lab.probes.token_cuts`): for each cut ℓ
  (tokens before the cut; every ℓ = 1 … L−1, or at most ``token_cuts`` of them evenly spaced) the
  cross block P[ℓ:, :ℓ] (``reads_past``; and P[:ℓ, ℓ:], ``reads_future``, for bidirectional encoders), the entropy of its normalised squared singular
  values — the "token-token correlations" of "Artificial Entanglement in the Fine-Tuning of Large
  Language Models" (arXiv 2601.06788). Over ℓ in tokens, per (layer, head, L, block), Cardy's chord
  S = a + (c/3)·ln((L/π)·sin(πℓ/L)), a volume law S = a + b·min(ℓ, L−ℓ) and a constant are fitted
  to the windows' mean profile and to each window (table ``attention_token_fits``); the verdict
  is the law best by AIC only with a margin > 2 and R² ≥ 0.8, else "neither fits".
* **digit chain** (table ``attention_entanglement``): ψ = vec(P)/‖P‖_F on the prime-factor site
  chain of L×L, the internal probe's profile (:func:`lab.kernels.profile.entanglement_profile`)
  applied to P: a cut there splits high from low digits of the query and key indices, not blocks
  of tokens. No law is fitted to it (five or six points of a non-monotone profile).

A uniform P (rank 1) has zero entropy everywhere; the identity has ln L at the digit chain's
row|column cut and zero at every token cut (its cross blocks are zero: NaN entropy).

Against the base on the same windows: the mean over cuts of |S_tuned − S_base| / S_base of the
digit-chain profiles, and the mean total variation distance ½‖P_tuned − P_base‖₁ of attention
rows. Beside them, the same kind of numbers inside the weights: the profile fits of that layer's
ΔW_q and ΔW_v, the relative entropy difference of W_q (W_v) tuned vs base, and ‖ΔW‖_F / ‖W‖_F.

The base runs once per run (:func:`_prepare`); its per-window profiles (digit chain and token
cuts) travel to every checkpoint's unit (small), its attention matrices are written once to
float32 files that the units map from disk (they are L²·heads·layers·windows numbers: too large
to ship). Attention is reduced layer by layer in a forward hook on each attention module, so only
one layer's (heads, L, L) matrices of one window are alive at a time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lab.errors import InputError
from lab.kernels.page import page_entropy
from lab.kernels.profile import entanglement_profile
from lab.kernels.tensorize import Sites, sites as chain_sites
from lab.probes.forward import attention_probabilities, forward_steps, qv_weights, run_windows
from lab.probes.kept_base import address_of, kept
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register
from lab.probes.token_cuts import NEITHER, fit_token_laws, monotone_halves, token_cut_spectra, token_cuts
from lab.probes.windows import (Window, attention_layers, check_window_options, load_model, load_tokenizer,
                                make_windows, seq_len_field, window_rows, windows_field)


@dataclass(frozen=True)
class AttentionOptions:
    """Options of the attention probe."""

    seq_len: tuple[int, ...] = seq_len_field()
    windows: int = windows_field()
    cache_dir: str = field_help("folder for the base's attention matrices (float32, read by every checkpoint's unit for "
                                "the total-variation distance; on a Dask cluster every worker must see it); "
                                "empty: the system's temporary folder", default="")
    token_cuts: int = field_help(
        "token cuts per length: at most N cuts ℓ, evenly spaced and symmetric under ℓ ↔ L−ℓ (always ℓ = 1 and L−1; "
        "every cut when L − 1 ≤ N); 0 = every cut ℓ = 1 … L−1, whose eigen-work grows as L⁴ (at L = 256 about 11 "
        "MiniLM forward passes per window, and ~10⁶ table rows per checkpoint at the default lengths: "
        "bench/RESULTS.md)", default=32)
    reuse_base: bool = field_help(
        "keep the base's part (its attention matrices and profiles on the windows) in cache_dir, addressed by the "
        "sha256 of the base's files, the texts, these options and lab's probe source, and reuse it in every later run "
        "on the same base (the demo's runs; lab.probes.kept_base); off: computed per run, removed when it ends",
        default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seq_len", check_window_options(self.seq_len, self.windows))
        if self.token_cuts < 0:
            raise ValueError(f"token_cuts={self.token_cuts}: 0 (every cut) or a positive number of cuts")
        if self.reuse_base and not self.cache_dir:
            raise ValueError("reuse_base=true keeps the base's part in cache_dir: set cache_dir to a folder")


# ---- pure functions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """Least squares S = a + b·x: intercept a, slope b and R² (NaN where undefined)."""

    intercept: float
    slope: float
    r2: float


def least_squares(x: np.ndarray, y: np.ndarray) -> Fit:
    """Fit y = a + b·x over the finite points; R² = 1 − SS_res/SS_tot (NaN when y is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0.0:
        return Fit(float("nan"), float("nan"), float("nan"))
    b, a = np.polyfit(x, y, 1)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - (a + b * x)) ** 2).sum())
    return Fit(float(a), float(b), 1.0 - ss_res / ss_tot if ss_tot > 0.0 else float("nan"))


MIN_R2 = 0.8  # the verdict rules of lab.probes.token_cuts, applied to the two-law comparison too
MIN_DELTA_AIC = 2.0


def fit_laws(ell: np.ndarray, entropy: np.ndarray) -> tuple[Fit, Fit, str | None]:
    """(volume fit S = a + b·ℓ, area-log fit S = a + b·ln ℓ, verdict).

    The verdict names the law with the lower residual sum of squares ("volume"/"area_log") only if
    its AIC is lower by more than 2 (both have two coefficients: ΔAIC = n·ln(RSS_other/RSS_best))
    and its R² ≥ 0.8; else "neither fits" (None when either R² is undefined).
    """
    ell = np.asarray(ell, np.float64)
    y = np.asarray(entropy, np.float64)
    volume = least_squares(ell, y)
    area = least_squares(np.log(ell), y)
    if not (np.isfinite(volume.r2) and np.isfinite(area.r2)):
        return volume, area, None
    n = int((np.isfinite(ell) & np.isfinite(y)).sum())
    best, other = (area, volume) if area.r2 > volume.r2 else (volume, area)
    rss_best, rss_other = max(1.0 - best.r2, 1e-300), max(1.0 - other.r2, 1e-300)  # both × SS_tot
    margin = n * np.log(rss_other / rss_best)
    verdict = ("area_log" if best is area else "volume") if margin > MIN_DELTA_AIC and best.r2 >= MIN_R2 else NEITHER
    return volume, area, verdict


def relative_difference(tuned: np.ndarray, base: np.ndarray) -> float:
    """Mean over cuts of |S_tuned − S_base| / S_base (cuts where S_base = 0 are left out; NaN if none)."""
    base = np.asarray(base, np.float64)
    ok = base > 0.0
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(np.asarray(tuned)[ok] - base[ok]) / base[ok]))


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """½‖p − q‖₁ of each row (last axis) of two stacks of probability rows."""
    return 0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum(axis=-1)


@dataclass(frozen=True)
class HeadProfiles:
    """Entropy profiles of a stack of L×L matrices (one per head): arrays (heads, cuts), and the chain."""

    sites: Sites
    entropy: np.ndarray
    renyi2: np.ndarray
    max_entropy: np.ndarray  # (cuts,)
    page_entropy: np.ndarray  # (cuts,)

    @property
    def cuts(self) -> np.ndarray:
        return self.sites.cuts


def head_profiles(P: np.ndarray) -> HeadProfiles:
    """The profile of :func:`~lab.kernels.profile.entanglement_profile` for every matrix of a stack at once.

    The same state ψ = vec(P_h)/‖P_h‖_F on the same chain, and the same Grams (the two largest by
    one batched product each, the others by partial traces, as :func:`lab.kernels.schmidt.cut_grams`
    does for one matrix), solved by one batched symmetric eigensolve per cut: a layer's heads cost
    a few batched calls instead of heads × (cuts) small ones, which keeps the profiles cheaper than
    the forward pass that produced the matrices.
    """
    import torch  # the model that produced P has loaded it already

    # all in torch (float64): mixing numpy's and torch's BLAS pools costs more than the work here;
    # and one thread: these solves are small, and on a loaded machine a multithreaded LAPACK stalls
    # (12 heads at L = 256: 0.16 s of CPU with one thread, 5-8 s with two at load 11)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _head_profiles(torch, P)
    finally:
        torch.set_num_threads(before)


def _head_profiles(torch, P) -> HeadProfiles:
    P = torch.as_tensor(np.asarray(P), dtype=torch.float64)
    H, L, _ = P.shape
    st = chain_sites(L, L)
    dl, dr, dims = st.d_left, st.d_right, st.dims
    psi = P.reshape(H, -1)
    n_cuts = len(dl)
    left = [i for i in range(n_cuts) if dl[i] <= dr[i]]
    right = [i for i in range(n_cuts) if dl[i] > dr[i]]
    grams: dict[int, Any] = {}
    if left:
        x = psi.reshape(H, int(dl[left[-1]]), -1)
        g = x @ x.transpose(1, 2)
        for i in reversed(left):
            grams[i] = g
            if i > 0:  # partial trace over site i (0-based), as in cut_grams
                a, d = int(dl[i - 1]), dims[i]
                g = g.reshape(H, a, d, a, d).diagonal(dim1=2, dim2=4).sum(-1)
    if right:
        y = psi.reshape(H, -1, int(dr[right[0]]))
        h = y.transpose(1, 2) @ y
        for i in right:
            grams[i] = h
            if i + 1 < n_cuts:
                d, b = dims[i + 1], int(dr[i + 1])
                h = h.reshape(H, d, b, d, b).diagonal(dim1=1, dim2=3).sum(-1)
    entropy = np.full((H, n_cuts), np.nan)
    renyi2 = np.full((H, n_cuts), np.nan)
    for i, g in grams.items():
        trace = g.diagonal(dim1=1, dim2=2).sum(-1).numpy()
        w = np.clip(torch.linalg.eigvalsh(g).numpy(), 0.0, None)  # a PSD Gram: rounding below 0 is 0
        p = w / np.where(trace > 0, trace, np.nan)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
            entropy[:, i] = np.where(trace > 0, s, np.nan)  # a zero matrix: undefined, as entanglement_profile
            renyi2[:, i] = -np.log((p * p).sum(axis=1))
    return HeadProfiles(st, entropy, renyi2, np.log(np.minimum(dl, dr).astype(np.float64)),
                        np.asarray(page_entropy(dl, dr), dtype=np.float64).reshape(-1))


# ---- running the model ----------------------------------------------------------------------------

def run_attention(model, windows: list[Window], on_layer: Callable[[Window, int, np.ndarray], None],
                  on_window: Callable[[int, Window], None] | None = None) -> None:
    """Run ``model`` on each window; ``on_layer(window, layer, P)`` gets each layer's (heads, L, L) P.

    P is the eager attention's probability output (float64 copy), taken in a forward hook on the
    attention module and dropped after the call, so one layer of one window is alive at a time.
    """
    import torch

    def install(current: list[Window]) -> list:
        def hook(layer: int):
            def fn(module, args, output):
                P = attention_probabilities(module, output)
                on_layer(current[0], layer, P[0].detach().to(torch.float64).numpy())
            return fn
        return [a.module.register_forward_hook(hook(a.layer)) for a in attention_layers(model)]

    run_windows(model, windows, install, on_window)


def is_causal(module, P: np.ndarray) -> bool:
    """Whether an attention module is causal: its ``is_causal`` flag (transformers sets it on LLaMA's, GPT-2's and
    BERT's attention), else whether P is exactly zero above the diagonal (a mask, not a pattern)."""
    flag = getattr(module, "is_causal", None)
    if flag is not None:
        return bool(flag)
    return not np.triu(P, 1).any()


def _cache_folder(options: AttentionOptions) -> Path:
    root = Path(options.cache_dir) if options.cache_dir else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lab-attention-base-", dir=root))
    # removed when the process that prepared it exits (the driver, or the Dask worker that ran the
    # prepare step), which outlives every unit of the run that reads it
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _prepare(base, options: AttentionOptions, ctx: ProbeContext) -> dict[str, Any]:
    """The base on the run's windows, once: windows, per-window profiles, attention matrices on disk.

    With ``reuse_base`` the base's part is read from ``cache_dir`` when a run on the same base, texts,
    options and source computed it before (the same numbers: they are what that run wrote), and kept
    there for later runs otherwise."""
    tok = load_tokenizer(base)
    texts = base.texts()
    windows = make_windows(tok, texts, options.seq_len, options.windows, base.corpus_name)
    if not options.reuse_base:
        return _compute_base(base, options, ctx, windows, _cache_folder(options))
    address = address_of(base.path, texts, options, (__name__, SUBJECTS), leave_out=("cache_dir", "reuse_base"))
    with kept(options.cache_dir, "attention", address) as entry:
        if entry.found:
            return _read_base(entry.folder, windows)
        prepared = _compute_base(base, options, ctx, windows, entry.folder)
        _write_base(entry.folder, prepared)
    return _read_base(entry.home, windows)


SUBJECTS = "lab.engine.subjects"  # what loads the base (eager attention, float32): its source is part of the address
_KEPT = "base.npz"  # in a kept entry beside the attention matrices and weights.npz: profiles and layer order


def _write_base(folder: Path, prepared: dict[str, Any]) -> None:
    arrays = {f"profile/{L}/{w}/{layer}/{h}": v for (L, w, layer, h), v in prepared["profiles"].items()}
    arrays |= {f"token/{L}/{w}/{layer}": v for (L, w, layer), v in prepared["token_profiles"].items()}
    arrays["order"] = np.array([[layer, i] for layer, i in prepared["order"].items()], dtype=np.int64).reshape(-1, 2)
    np.savez(folder / _KEPT, **arrays)


def _read_base(folder: Path, windows: list[Window]) -> dict[str, Any]:
    """A kept entry as ``_prepare`` returns it (its paths in ``folder``, arrays as stored: float64, exact)."""
    profiles, token = {}, {}
    with np.load(folder / _KEPT, allow_pickle=False) as saved:
        for key in saved.files:
            kind, *index = key.split("/")
            if kind == "profile":
                profiles[tuple(int(i) for i in index)] = saved[key]
            elif kind == "token":
                token[tuple(int(i) for i in index)] = saved[key]
        order = {int(layer): int(i) for layer, i in saved["order"]}
    lengths = sorted({w.seq_len for w in windows})
    return {"windows": windows, "profiles": profiles, "token_profiles": token,
            "files": {L: str(folder / f"attention-L{L}.npy") for L in lengths}, "order": order,
            "weights": str(folder / "weights.npz")}


def _compute_base(base, options: AttentionOptions, ctx: ProbeContext, windows: list[Window], folder: Path) -> dict[str, Any]:
    """The base's attention on ``windows``: profiles in memory, matrices and q/v weights written to ``folder``."""
    model = load_model(base)
    n_layers = len(attention_layers(model))
    heads = int(model.config.num_attention_heads)
    maps = {L: np.lib.format.open_memmap(folder / f"attention-L{L}.npy", mode="w+", dtype=np.float32,
                                         shape=(options.windows, n_layers, heads, L, L)) for L in options.seq_len}
    profiles: dict[tuple[int, int, int, int], np.ndarray] = {}  # (L, window, layer, head) -> entropy per cut
    token: dict[tuple[int, int, int], np.ndarray] = {}  # (L, window, layer) -> token-cut entropy (blocks, heads, cuts)
    modules = {a.layer: a.module for a in attention_layers(model)}
    order = {layer: i for i, layer in enumerate(modules)}

    def on_layer(w: Window, layer: int, P: np.ndarray) -> None:
        maps[w.seq_len][w.index, order[layer]] = P
        entropy = head_profiles(P).entropy
        for h in range(P.shape[0]):
            profiles[(w.seq_len, w.index, layer, h)] = entropy[h]
        cuts = token_cuts(w.seq_len, options.token_cuts)
        token[(w.seq_len, w.index, layer)] = token_cut_spectra(P, cuts, is_causal(modules[layer], P)).entropy

    run_attention(model, windows, on_layer, forward_steps(ctx, "base attention", windows))
    for m in maps.values():
        m.flush()
    weights = folder / "weights.npz"  # the base's q and v, for the inside comparison (too large to ship)
    np.savez(weights, **{f"{role}{layer}": w for layer, qv in qv_weights(model).items() for role, w in qv.items()})
    return {"windows": windows, "profiles": profiles, "token_profiles": token,
            "files": {L: str(folder / f"attention-L{L}.npy") for L in maps}, "order": order, "weights": str(weights)}


def _internal(tuned: dict[str, np.ndarray], base: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The inside numbers of one layer for q and v: ΔW profile fits, W's profile change, ‖ΔW‖_F/‖W‖_F."""
    out: dict[str, Any] = {}
    for role in ("q", "v"):
        keys = [f"{role}_delta_volume_r2", f"{role}_delta_area_r2", f"{role}_delta_better_fit",
                f"{role}_weight_entropy_diff", f"{role}_rel_change"]
        if base is None:
            out.update(dict.fromkeys(keys))
            continue
        w_t, w_b = tuned[role], base[role]
        delta = w_t - w_b
        norm = float(np.linalg.norm(delta))
        if norm == 0.0:
            out.update(dict.fromkeys(keys[:3]))
        else:
            p = entanglement_profile(delta)
            volume, area, better = fit_laws(p.max_entropy, p.entropy)
            out.update({keys[0]: volume.r2, keys[1]: area.r2, keys[2]: better})
        out[keys[3]] = relative_difference(entanglement_profile(w_t).entropy, entanglement_profile(w_b).entropy)
        out[keys[4]] = norm / float(np.linalg.norm(w_b))
    return out


def _run(subject, options: AttentionOptions, ctx: ProbeContext) -> Rows:
    prepared = subject.prepared
    if prepared is None:
        raise InputError("the attention probe compares every checkpoint with the base: pass --base BASE")
    windows: list[Window] = prepared["windows"]
    maps = {}
    for L, path in prepared["files"].items():
        if not os.path.exists(path):
            raise InputError(f"{path}: the base's attention matrices are not visible here; set --set attention.cache_dir "
                             "to a folder every worker sees")
        maps[L] = np.load(path, mmap_mode="r")
    order = prepared["order"]
    model = load_model(subject)
    modules = {a.layer: a.module for a in attention_layers(model)}
    ent_rows: list[dict] = []
    cut_rows: list[dict] = []
    sums: dict[tuple[int, int, int], list] = {}  # (L, layer, head) -> [Σ tuned profile, Σ base profile, Σ tv, n]
    token: dict[tuple[int, int, int, str], list] = {}  # (L, layer, head, block) -> [(tuned S(ℓ), base S(ℓ)) per window]
    cuts_of: dict[int, np.ndarray] = {}

    def on_layer(w: Window, layer: int, P: np.ndarray) -> None:
        base_P = np.asarray(maps[w.seq_len][w.index, order[layer]], dtype=np.float64)
        tv = total_variation(P, base_P).mean(axis=-1)  # per head: mean over rows
        p = head_profiles(P)
        dl, dr = p.sites.d_left, p.sites.d_right
        for h in range(P.shape[0]):
            base_s = prepared["profiles"][(w.seq_len, w.index, layer, h)]
            for i, k in enumerate(p.cuts):
                ent_rows.append({"layer": layer, "head": h, "seq_len": w.seq_len, "window": w.index, "cut": int(k),
                                 "n_sites": p.sites.n_sites, "d_left": int(dl[i]), "d_right": int(dr[i]),
                                 "entropy": float(p.entropy[h, i]), "renyi2": float(p.renyi2[h, i]),
                                 "max_entropy": float(p.max_entropy[i]), "page_entropy": float(p.page_entropy[i]),
                                 "base_entropy": float(base_s[i])})
            acc = sums.setdefault((w.seq_len, layer, h), [0.0, 0.0, 0.0, 0])
            acc[0] = acc[0] + p.entropy[h]
            acc[1] = acc[1] + base_s
            acc[2] += float(tv[h])
            acc[3] += 1
        cut_rows.extend(_token_rows(w, layer, P, modules[layer], prepared, options, token, cuts_of))

    run_attention(model, windows, on_layer, forward_steps(ctx, f"{subject.checkpoint} attention", windows))
    internal = _internal_by_layer(subject, model, prepared)
    fits = {key: _token_fit_row(key, cuts_of[key[0]], profiles) for key, profiles in token.items()}
    summary = []
    for (L, layer, h), (s_t, s_b, tv, n) in sums.items():
        past = fits[(L, layer, h, "reads_past")]
        summary.append({"layer": layer, "head": h, "seq_len": L, "windows": n,
                        "token_verdict": past["verdict"], "token_best_fit": past["best_fit"],
                        "token_aic_margin": past["aic_margin"], "token_cardy_c": past["cardy_c"],
                        "token_cardy_r2": past["cardy_r2"], "token_volume_r2": past["volume_r2"],
                        "base_token_verdict": past["base_verdict"], "base_token_cardy_c": past["base_cardy_c"],
                        "base_token_cardy_r2": past["base_cardy_r2"],
                        "entropy_diff": relative_difference(s_t / n, s_b / n),
                        "attention_tv": tv / n, **internal.get(layer, _internal({}, None))})
    tok = load_tokenizer(subject)
    return {"windows": window_rows(tok, windows, "attention"), "attention_entanglement": ent_rows,
            "attention_token_cuts": cut_rows, "attention_token_fits": list(fits.values()),
            "attention_summary": summary}


def _token_rows(w: Window, layer: int, P: np.ndarray, module, prepared, options: AttentionOptions,
                token: dict, cuts_of: dict) -> list[dict]:
    """One window's and layer's ``attention_token_cuts`` rows; its profiles are added to ``token`` for the fits."""
    L = w.seq_len
    cuts = cuts_of.setdefault(L, token_cuts(L, options.token_cuts))
    t = token_cut_spectra(P, cuts, is_causal(module, P))
    base = prepared["token_profiles"][(L, w.index, layer)]
    bound = np.log(np.minimum(cuts, L - cuts).astype(np.float64))
    rows = []
    for b, block in enumerate(t.blocks):
        for h in range(P.shape[0]):
            token.setdefault((L, layer, h, block), []).append((t.entropy[b, h], base[b, h]))
            rows += [{"layer": layer, "head": h, "seq_len": L, "window": w.index, "block": block, "cut": int(ell),
                      "entropy": float(t.entropy[b, h, j]), "renyi2": float(t.renyi2[b, h, j]),
                      "rank": int(t.rank[b, h, j]), "mass": float(t.mass[b, h, j]), "max_entropy": float(bound[j]),
                      "base_entropy": float(base[b, h, j])} for j, ell in enumerate(cuts)]
    return rows


def _token_fit_row(key: tuple[int, int, int, str], cuts: np.ndarray, profiles: list) -> dict[str, Any]:
    """The ``attention_token_fits`` row of one (L, layer, head, block): the laws over the windows' mean profile,
    their spread over the windows' own fits, and the base's."""
    L, layer, h, block = key
    tuned = np.array([t for t, _ in profiles])
    base = np.array([b for _, b in profiles])
    with np.errstate(invalid="ignore"):
        mean_t, mean_b = np.nanmean(tuned, axis=0), np.nanmean(base, axis=0)
    laws, base_laws = fit_token_laws(cuts, L, mean_t), fit_token_laws(cuts, L, mean_b)
    per_window = [fit_token_laws(cuts, L, s) for s in tuned]
    base_windows = [fit_token_laws(cuts, L, s) for s in base]
    rises, falls = monotone_halves(cuts, L, mean_t)
    row: dict[str, Any] = {"layer": layer, "head": h, "seq_len": L, "block": block, "windows": len(profiles),
                           "cuts": int(len(cuts))}
    for f in laws.laws:
        row[f"{f.law}_a"] = f.a
        if f.law == "cardy":
            row["cardy_c"] = f.c
        elif f.law == "volume":
            row["volume_b"] = f.slope
        row.update({f"{f.law}_r2": f.r2, f"{f.law}_rse": f.rse, f"{f.law}_aic": f.aic})
    del row["constant_r2"]  # 0 by definition
    row.update({"best_fit": laws.best, "aic_margin": laws.margin, "verdict": laws.verdict,
                "rises_left": rises, "falls_right": falls,
                "window_cardy_c_mean": _nan_stat(np.mean, [f.cardy.c for f in per_window]),
                "window_cardy_c_sd": _nan_stat(_sd, [f.cardy.c for f in per_window]),
                "window_cardy_r2_median": _nan_stat(np.median, [f.cardy.r2 for f in per_window]),
                "window_verdict_share": (float(np.mean([f.verdict == laws.verdict for f in per_window]))
                                         if laws.verdict is not None else np.nan),
                "base_cardy_c": base_laws.cardy.c, "base_cardy_r2": base_laws.cardy.r2,
                "base_volume_r2": base_laws.volume.r2, "base_best_fit": base_laws.best,
                "base_aic_margin": base_laws.margin, "base_verdict": base_laws.verdict,
                "base_window_cardy_c_sd": _nan_stat(_sd, [f.cardy.c for f in base_windows])})
    return row


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def _nan_stat(stat, values) -> float:
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    return float(stat(x)) if x.size else float("nan")


def _internal_by_layer(subject, model, prepared) -> dict[int, dict[str, Any]]:
    tuned = qv_weights(model)
    with np.load(prepared["weights"]) as saved:
        base = {layer: {role: saved[f"{role}{layer}"] for role in ("q", "v")} for layer in tuned
                if f"q{layer}" in saved.files}
    return {layer: _internal(w, base.get(layer)) for layer, w in tuned.items()}


register(Probe(
    name="attention",
    tables=("windows", "attention_entanglement", "attention_token_cuts", "attention_token_fits", "attention_summary"),
    run=_run,
    scope="model",
    options=AttentionOptions,
    default=False,
    prepare=_prepare,
    description="entropy of every head's attention matrix on fixed token windows: the cross blocks at every token cut with "
                "Cardy / volume / constant fits over ℓ, the digit-chain profile, and the no-hair comparison with the "
                "base (needs --base and a tokenizer; runs the models on text)",
))
