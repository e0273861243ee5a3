"""No-hair: two fine-tunes of one base compared inside (their ΔW profiles) and outside (their attention).

"Artificial Entanglement in the Fine-Tuning of Large Language Models" (arXiv 2601.06788) finds
that LoRA and full fine-tuning leave distinct internal signatures that do not show in the
attention. The test is a comparison of two fine-tunes a and b of one base, on the same token
windows (:mod:`lab.probes.windows`), one row per (pair, seq_len, layer, measure):

* **inside** (no windows): for the query and the value projection,
  mean over cuts k of |S_k(ΔW_a) − S_k(ΔW_b)| / S_page,k, with S_k the MPS entropy profile of
  :func:`lab.kernels.profile.entanglement_profile` and S_page Page's value at that cut;
  ``inside`` is the mean of the q and v numbers (ΔW = W_eff − W_base as the model runs it).
* **outside**, per window, then averaged over windows:

  - ``token_cuts``: mean over heads, blocks and cuts ℓ of |S_a(ℓ) − S_b(ℓ)| / S_base(ℓ), S(ℓ) the
    entropy of the normalised squared singular values of the cross block P[ℓ:, :ℓ] (and P[:ℓ, ℓ:],
    which is zero in a causal model and so left out: only cuts with S_base > 0 count), computed by
    :mod:`lab.probes.token_cuts` at the cuts its ``token_cuts(L, max_cuts)`` picks;
  - ``digit_chain``: the same over the cuts of the prime-digit chain of P
    (:func:`lab.probes.attention.head_profiles`, the internal probe applied to P);
  - ``rows``: mean over heads and query rows of ½‖P_a − P_b‖₁;
  - ``head_outputs``: mean over heads of ‖O_a − O_b‖_F / ‖O_base‖_F, O_h = P_h·V_h (L × d_head;
    V the value projection's output, a GQA key/value head shared by its query heads);
  - ``layer_output``: ‖Y_a − Y_b‖_F / ‖Y_base‖_F with Y = [O_1 … O_H]·W_Oᵀ + b_O, the attention
    layer's output after its output projection (before dropout, residual and norm);

  each beside the same distance of a and of b from the base, and with a percentile bootstrap
  95 % interval over windows (resampling windows, seeded by the run's seed).
* **no-hair ratio** = outside(a, b) / inside(a, b), its interval the outside interval over inside.

How it runs (scope ``pair``, one unit per pair of checkpoints): ``prepare`` runs the base once on
the windows and writes its attention P, value heads V (float32, as the model computed them: exact)
and layer outputs Y (float64) to files every unit maps from disk, with its profiles (small) in the
prepared value. A pair's unit loads a, runs it over the windows into files of the same layout,
drops it, does the same for b, then compares the three traces one (window, layer) at a time. A
checkpoint's trace (and its ΔW profiles) is kept for the other pairs the same process runs (a
checkpoint is in n − 1 pairs; files removed when the process exits), so a serial run traces each
model once. One model is loaded at a time, one layer's matrices of one window are in memory at a
time, and the arithmetic is the same in every process: serial and Dask runs give equal rows.
"""

from __future__ import annotations

import atexit
import gc
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import InputError
from lab.kernels.profile import entanglement_profile
from lab.probes.attention import head_profiles, total_variation
from lab.probes.forward import attention_probabilities, effective_weight, forward_steps, qv_weights, run_windows
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register
from lab.probes.token_cuts import token_cut_spectra, token_cuts
from lab.probes.windows import (Window, attention_layers, check_window_options, head_shape, load_model, load_tokenizer,
                                make_windows, seq_len_field, windows_field)

MEASURES = ("token_cuts", "digit_chain", "rows", "head_outputs", "layer_output")
LEVEL = 0.95


@dataclass(frozen=True)
class NoHairOptions:
    """Options of the no-hair probe."""

    seq_len: tuple[int, ...] = seq_len_field()
    windows: int = windows_field()
    pairs: tuple[str, ...] = field_help("pairs to compare, FIRST:SECOND checkpoint names (e.g. lora-r4:full); "
                                        "empty: every pair of the run's checkpoints", default=())
    token_cuts: int = field_help("token cuts ℓ per length for the token-cut profile: at most this many, evenly spaced "
                                 "and symmetric (lab.probes.token_cuts.token_cuts); 0: every ℓ = 1 … L−1", default=32)
    bootstrap: int = field_help("bootstrap resamples of the windows for the 95 % intervals", default=2000)
    cache_dir: str = field_help("folder for the base's and each pair's traces (attention, value heads, layer "
                                "outputs; on a Dask cluster every worker must see it); empty: the system's "
                                "temporary folder", default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "seq_len", check_window_options(self.seq_len, self.windows))
        if self.token_cuts < 0:
            raise ValueError(f"token_cuts={self.token_cuts}: 0 (every cut) or a positive number of cuts")
        if self.bootstrap < 1:
            raise ValueError(f"bootstrap={self.bootstrap}: at least one resample is needed")
        bad = [p for p in self.pairs if p.count(":") != 1 or "" in p.split(":")]
        if bad:
            raise ValueError(f"pairs {', '.join(bad)}: each pair is FIRST:SECOND, two checkpoint names")


# ---- pure functions -------------------------------------------------------------------------------

def cross_block_entropies(P: np.ndarray, max_cuts: int = 0) -> np.ndarray:
    """Token-cut entropies of a stack of L×L matrices, (blocks, heads, cuts): both cross blocks
    (reads_past P[ℓ:, :ℓ], reads_future P[:ℓ, ℓ:]) at the cuts :func:`lab.probes.token_cuts.token_cuts`
    chooses, by :func:`lab.probes.token_cuts.token_cut_spectra`; a zero block (a causal model's
    reads_future) is NaN and so drops out of every distance."""
    P = np.asarray(P)
    return token_cut_spectra(P, token_cuts(P.shape[-1], max_cuts)).entropy


def relative_entropy_distance(s_a: np.ndarray, s_b: np.ndarray, s_base: np.ndarray) -> float:
    """Mean of |S_a − S_b| / S_base over the entries where all three are finite and S_base > 0 (NaN if none)."""
    s_a, s_b, s_base = (np.asarray(x, np.float64) for x in (s_a, s_b, s_base))
    ok = np.isfinite(s_a) & np.isfinite(s_b) & np.isfinite(s_base) & (s_base > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(s_a[ok] - s_b[ok]) / s_base[ok]))


def head_outputs(P: np.ndarray, V: np.ndarray) -> np.ndarray:
    """O_h = P_h·V_h for every head: (heads, L, L) and (heads, L, d_head) give (heads, L, d_head), float64."""
    return np.asarray(P, np.float64) @ np.asarray(V, np.float64)


def layer_output(O: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Y = [O_1 … O_H]·W_Oᵀ + b_O (L × d_model): the heads concatenated head-major, then the output projection."""
    H, L, d = O.shape
    return O.transpose(1, 0, 2).reshape(L, H * d) @ weight.T + bias


def frobenius_ratio(x: np.ndarray, y: np.ndarray, reference: np.ndarray) -> float:
    """‖x − y‖_F / ‖reference‖_F (NaN when the reference is zero)."""
    ref = float(np.linalg.norm(reference))
    return float(np.linalg.norm(np.asarray(x) - np.asarray(y)) / ref) if ref > 0 else float("nan")


def head_output_distance(O_a: np.ndarray, O_b: np.ndarray, O_base: np.ndarray) -> float:
    """Mean over heads of ‖O_a,h − O_b,h‖_F / ‖O_base,h‖_F (heads with O_base,h = 0 left out)."""
    ref = np.linalg.norm(O_base, axis=(1, 2))
    diff = np.linalg.norm(O_a - O_b, axis=(1, 2))
    ok = ref > 0
    return float(np.mean(diff[ok] / ref[ok])) if ok.any() else float("nan")


def bootstrap_interval(values: np.ndarray, resamples: int, seed: int, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped), resampling with replacement."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def inside_distance(delta_a: np.ndarray, delta_b: np.ndarray) -> float:
    """Mean over cuts of |S_k(ΔW_a) − S_k(ΔW_b)| / S_page,k (NaN when either update is zero)."""
    pa, pb = entanglement_profile(delta_a), entanglement_profile(delta_b)
    return _profile_distance(pa.entropy, pb.entropy, pa.page_entropy)


def _profile_distance(s_a, s_b, page) -> float:
    s_a, s_b, page = (np.asarray(x, np.float64) for x in (s_a, s_b, page))
    if not (np.isfinite(s_a).all() and np.isfinite(s_b).all()):
        return float("nan")
    ok = page > 0
    return float(np.mean(np.abs(s_a[ok] - s_b[ok]) / page[ok])) if ok.any() else float("nan")


# ---- traces: one model run over the windows, on disk ---------------------------------------------

@dataclass
class Trace:
    """A model's run over the windows: files of P (float32), V per query head (float32) and Y (float64)
    per length, each (windows, layers, …); and the small per-(L, window, layer) profiles in memory."""

    folder: str
    layers: list[int]
    heads: int
    d_head: int
    d_model: int
    token_cuts: dict[tuple[int, int, int], np.ndarray]  # (L, window, layer) -> (blocks, heads, cuts)
    digit_chain: dict[tuple[int, int, int], np.ndarray]  # (L, window, layer) -> (heads, cuts)

    def arrays(self, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P, V, Y) of length L, memory-mapped read-only."""
        return tuple(np.load(Path(self.folder) / f"{what}-L{L}.npy", mmap_mode="r") for what in ("P", "V", "Y"))


def output_projection(model, layer) -> Any:
    """The output projection W_O of an attention layer: LLaMA's o_proj (out_proj), BERT's attention.output.dense."""
    for name in ("o_proj", "out_proj"):
        if hasattr(layer.module, name):
            return getattr(layer.module, name)
    parent = model.get_submodule(layer.name.rsplit(".", 1)[0]) if "." in layer.name else None
    if parent is not None and hasattr(parent, "output") and hasattr(parent.output, "dense"):
        return parent.output.dense
    raise InputError(f"{type(model).__name__}: no output projection (o_proj, out_proj or output.dense) found for "
                     f"attention layer {layer.name}")


def trace(model, windows: list[Window], folder: Path, ctx: ProbeContext | None = None, what: str = "",
          max_cuts: int = 0) -> Trace:
    """Run ``model`` over ``windows``, writing P, V and Y into ``folder`` (see :class:`Trace`).

    P is the eager attention's probability output and V the value projection's output, both taken
    in forward hooks; Y is computed in float64 from them and W_O's effective weight. One layer of
    one window is alive at a time.
    """
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    layers = attention_layers(model)
    heads, kv, d_head = head_shape(model)
    order = {a.layer: i for i, a in enumerate(layers)}
    projections = {a.layer: output_projection(model, a) for a in layers}
    w_o: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    d_model = int(effective_weight(projections[layers[0].layer])[0].shape[0])
    n = max(w.index for w in windows) + 1
    lengths = sorted({w.seq_len for w in windows})
    files = {}
    for L in lengths:
        files[L] = (np.lib.format.open_memmap(folder / f"P-L{L}.npy", "w+", np.float32, (n, len(layers), heads, L, L)),
                    np.lib.format.open_memmap(folder / f"V-L{L}.npy", "w+", np.float32, (n, len(layers), heads, L, d_head)),
                    np.lib.format.open_memmap(folder / f"Y-L{L}.npy", "w+", np.float64, (n, len(layers), L, d_model)))
    token_profiles: dict = {}
    digit_chain: dict = {}
    values: dict[int, np.ndarray] = {}
    current: list[Window] = []  # the window being run: run_windows' list, bound by install

    def v_hook(layer: int):
        def fn(module, args, output):
            v = output.detach()[0].to(torch.float32).numpy()  # (L, kv·d_head)
            L = v.shape[0]
            v = v.reshape(L, kv, d_head).transpose(1, 0, 2)
            values[layer] = np.repeat(v, heads // kv, axis=0)  # query head h reads key/value head h // (heads/kv)
        return fn

    def attn_hook(layer: int):
        def fn(module, args, output):
            w = current[0]
            P = attention_probabilities(module, output)[0].detach().to(torch.float32).numpy()
            V = values.pop(layer)
            if layer not in w_o:
                w_o[layer] = effective_weight(projections[layer])
            Pf, Vf, Yf = files[w.seq_len]
            i = order[layer]
            Pf[w.index, i], Vf[w.index, i] = P, V
            Yf[w.index, i] = layer_output(head_outputs(P, V), *w_o[layer])
            token_profiles[(w.seq_len, w.index, layer)] = cross_block_entropies(P, max_cuts)
            digit_chain[(w.seq_len, w.index, layer)] = head_profiles(P).entropy
        return fn

    def install(running: list[Window]) -> list:
        nonlocal current
        current = running
        return ([a.v.register_forward_hook(v_hook(a.layer)) for a in layers]
                + [a.module.register_forward_hook(attn_hook(a.layer)) for a in layers])

    run_windows(model, windows, install, None if ctx is None else forward_steps(ctx, what, windows))
    for arrays in files.values():
        for a in arrays:
            a.flush()
    return Trace(str(folder), [a.layer for a in layers], heads, d_head, d_model, token_profiles, digit_chain)


def _temporary(options: NoHairOptions, prefix: str) -> Path:
    root = Path(options.cache_dir) if options.cache_dir else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


# ---- the probe ------------------------------------------------------------------------------------

def _prepare(base, options: NoHairOptions, ctx: ProbeContext) -> dict[str, Any]:
    """The base on the run's windows, once: its trace on disk and its q/v weights."""
    tok = load_tokenizer(base)
    windows = make_windows(tok, base.texts(), options.seq_len, options.windows, base.corpus_name)
    model = load_model(base)
    folder = _temporary(options, "lab-no-hair-base-")
    # removed when the process that prepared it exits (the driver, or the Dask worker that ran the
    # prepare step), which outlives every unit of the run that reads it
    atexit.register(shutil.rmtree, folder, True)
    base_trace = trace(model, windows, folder, ctx, "base (no-hair)", options.token_cuts)
    weights = folder / "weights.npz"
    np.savez(weights, **{f"{role}{layer}": w for layer, qv in qv_weights(model).items() for role, w in qv.items()})
    return {"windows": windows, "trace": base_trace, "weights": str(weights)}


def _selected(options: NoHairOptions, first: str, second: str) -> bool:
    return not options.pairs or f"{first}:{second}" in options.pairs or f"{second}:{first}" in options.pairs


def _run(subject, options: NoHairOptions, ctx: ProbeContext) -> Rows:
    prepared = subject.prepared
    if prepared is None:
        raise InputError("the no-hair probe compares two fine-tunes of one base: pass --base BASE")
    first, second = subject.first, subject.second
    if not _selected(options, first.checkpoint, second.checkpoint):
        return {}
    base_trace: Trace = prepared["trace"]
    if not Path(base_trace.folder).is_dir():
        raise InputError(f"{base_trace.folder}: the base's traces are not visible here; set --set no_hair.cache_dir "
                         "to a folder every worker sees")
    windows: list[Window] = prepared["windows"]
    with np.load(prepared["weights"]) as saved:
        base_w = {layer: {role: saved[f"{role}{layer}"] for role in ("q", "v")} for layer in base_trace.layers}
    traces, updates = zip(*(_member(m, windows, base_trace, base_w, options, ctx) for m in (first, second)))
    for member, t in zip((first, second), traces):
        if t.layers != base_trace.layers:
            raise InputError(f"{member.path}: its attention layers {t.layers} are not the base's {base_trace.layers}")
    return {"no_hair": _compare(first.checkpoint, second.checkpoint, base_trace, list(traces), list(updates), base_w,
                                windows, options, ctx)}


@dataclass(frozen=True)
class UpdateProfile:
    """What the inside distance needs of one ΔW: its entropy profile, Page's values at its cuts, ‖ΔW‖_F."""

    entropy: np.ndarray
    page_entropy: np.ndarray
    fro_norm: float


# A checkpoint's trace and update profiles, reused by every pair unit this process runs that has it (a
# checkpoint is in n − 1 pairs): keyed by its path, format, base and the base's trace folder (unique to
# one prepare step, so to one run's windows) and the token-cut option. The folders are removed when the
# process exits, as the base's are.
_MEMBERS: dict[tuple, tuple[Trace, dict[int, dict[str, UpdateProfile]]]] = {}


def _member(subject, windows: list[Window], base_trace: Trace, base_w: dict, options: NoHairOptions,
            ctx: ProbeContext) -> tuple[Trace, dict[int, dict[str, UpdateProfile]]]:
    """One checkpoint's trace over the windows and its q/v update profiles (computed once per process)."""
    key = (str(subject.path), subject.format, str(subject.base), base_trace.folder, options.token_cuts)
    if key in _MEMBERS and Path(_MEMBERS[key][0].folder).is_dir():
        return _MEMBERS[key]
    model = load_model(subject)
    folder = _temporary(options, "lab-no-hair-member-")
    atexit.register(shutil.rmtree, folder, True)
    member_trace = trace(model, windows, folder, ctx, f"{subject.checkpoint} (no-hair)", options.token_cuts)
    updates = {}
    for layer, w in qv_weights(model).items():
        if layer in base_w:
            updates[layer] = {}
            for role in ("q", "v"):
                delta = w[role] - base_w[layer][role]
                p = entanglement_profile(delta)
                updates[layer][role] = UpdateProfile(p.entropy, p.page_entropy, float(np.linalg.norm(delta)))
    del model
    subject._model = None  # one model in memory at a time
    gc.collect()
    _MEMBERS[key] = (member_trace, updates)
    return _MEMBERS[key]


def _window_distances(L: int, w: int, i: int, layer: int, base: Trace, a: Trace, b: Trace,
                      arrays: list[tuple[np.ndarray, ...]]) -> dict[str, tuple[float, float, float]]:
    """Every measure at one (window, layer): (a vs b, a vs base, b vs base)."""
    (P0, V0, Y0), (Pa, Va, Ya), (Pb, Vb, Yb) = [tuple(np.asarray(x[w, i], np.float64) for x in arr) for arr in arrays]
    key = (L, w, layer)
    out = {}
    for name, t in (("token_cuts", lambda tr: tr.token_cuts[key]), ("digit_chain", lambda tr: tr.digit_chain[key])):
        s0, sa, sb = t(base), t(a), t(b)
        out[name] = (relative_entropy_distance(sa, sb, s0), relative_entropy_distance(sa, s0, s0),
                     relative_entropy_distance(sb, s0, s0))
    out["rows"] = tuple(float(total_variation(x, y).mean()) for x, y in ((Pa, Pb), (Pa, P0), (Pb, P0)))
    O0, Oa, Ob = head_outputs(P0, V0), head_outputs(Pa, Va), head_outputs(Pb, Vb)
    out["head_outputs"] = (head_output_distance(Oa, Ob, O0), head_output_distance(Oa, O0, O0),
                           head_output_distance(Ob, O0, O0))
    out["layer_output"] = (frobenius_ratio(Ya, Yb, Y0), frobenius_ratio(Ya, Y0, Y0), frobenius_ratio(Yb, Y0, Y0))
    return out


def _compare(name_a: str, name_b: str, base: Trace, traces: list[Trace], updates: list[dict], base_w: dict,
             windows: list[Window], options: NoHairOptions, ctx: ProbeContext) -> list[dict[str, Any]]:
    a, b = traces
    inside: dict[int, dict[str, float]] = {}
    for layer in base.layers:
        u_a, u_b = updates[0][layer], updates[1][layer]
        q, v = (_profile_distance(u_a[r].entropy, u_b[r].entropy, u_a[r].page_entropy) for r in ("q", "v"))
        norm_w = np.sqrt(sum(np.linalg.norm(base_w[layer][r]) ** 2 for r in ("q", "v")))
        size = [float(np.sqrt(sum(u[r].fro_norm ** 2 for r in ("q", "v"))) / norm_w) for u in (u_a, u_b)]
        inside[layer] = {"inside_q": q, "inside_v": v, "inside": (q + v) / 2, "update_first": size[0], "update_second": size[1]}
    rows = []
    for L in sorted({w.seq_len for w in windows}):
        arrays = [t.arrays(L) for t in (base, a, b)]
        idx = sorted(w.index for w in windows if w.seq_len == L)
        for i, layer in enumerate(base.layers):
            per = [_window_distances(L, w, i, layer, base, a, b, arrays) for w in idx]
            for measure in MEASURES:
                vals = np.array([p[measure] for p in per])  # (windows, 3)
                row: dict[str, Any] = {"first": name_a, "second": name_b, "layer": layer, "seq_len": L,
                                       "windows": len(idx), "measure": measure, "bootstrap": options.bootstrap}
                for j, col in enumerate(("distance", "first_base", "second_base")):
                    x = vals[:, j]
                    lo, hi = bootstrap_interval(x, options.bootstrap, ctx.seed)
                    finite = x[np.isfinite(x)]
                    row.update({col: float(finite.mean()) if finite.size else float("nan"),
                                f"{col}_lo": lo, f"{col}_hi": hi})
                row.update(inside[layer])
                with np.errstate(divide="ignore", invalid="ignore"):
                    ins = np.float64(row["inside"])
                    row.update({"ratio": float(np.float64(row["distance"]) / ins),
                                "ratio_lo": float(np.float64(row["distance_lo"]) / ins),
                                "ratio_hi": float(np.float64(row["distance_hi"]) / ins)})
                rows.append(row)
    return rows


register(Probe(
    name="no_hair",
    tables=("no_hair",),
    run=_run,
    scope="pair",
    options=NoHairOptions,
    default=False,
    prepare=_prepare,
    description="no-hair: every pair of fine-tunes of one base compared inside (ΔW_q, ΔW_v entropy profiles) and "
                "outside (token-cut and digit-chain attention profiles, attention rows, head and layer outputs) on "
                "the same windows, with bootstrap intervals over windows (needs --base and a tokenizer)",
))
