"""MPS Adaptation and LoRA-Squeeze's three variants on MiniLM, over seeds.

Two methods from the papers the lab is built on:

* MPS Adaptation (Artificial Entanglement, arXiv 2601.06788): ΔW = (α/r)·B·A_MPS with
  A_MPS[a, (i1, i2)] = Σ_c C1[a, i1, c]·C2[c, i2] (bond χ, d_in = d1·d2). Compared with LoRA at the
  same r: the entropy at the row|column cut, held-out loss, parameters. χ's bound on the entropy at
  the cuts inside the input sites (lab/finetune/mps_layout.py) is an identity: reported as a check.
* LoRA-Squeeze (Vulić et al., arXiv 2602.10993), its three variants at equal final rank K = 16 and
  equal total steps T = 30 (the demo's), against LoRA trained directly at K:
  - Post-Squeeze: LoRA r = 64 trained T steps, then the SVD of its update truncated to K;
  - Cont-Squeeze: LoRA r = 64 trained T − 10 steps (its checkpoint-20), Post-Squeeze to K, then
    10 steps at K at the source's scale α/r, continuing its data order (``lab squeeze --steps``);
  - In-Squeeze: LoRA r = 64 annealed to K during training, linearly over steps 11–20, then 10
    steps at K (``lab finetune --squeeze-to 16 --squeeze-steps 11:20``), so Cont- and In-Squeeze
    both end with 10 steps at K.

Every run is trained for each of ``--seeds N`` seeds (the demo's grid with ``seed=s``), cached under
the demo's cache dir (``squeeze-seeds/seed-s``; a complete run with identical options elsewhere, the
demo's own or the entanglement-valley seeds', is reused). Results are mean ± sd over seeds with the
per-seed values; a difference is called separated only when the two intervals mean ± sd do not
overlap, otherwise "not separated at N seeds".

    python analyses/mps_and_squeeze.py [--seeds N] [--workdir DIR] [--out DIR] [--held-out N]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


ROOT = Path(__file__).resolve().parent
TOL = 1e-9
VARIANTS = ("direct", "post", "cont", "in")


@dataclass(frozen=True)
class Setup:
    """The comparison's sizes: LoRA rank R squeezed to K, steps per run, Cont-Squeeze's steps at K
    (also In-Squeeze's after its annealing, which takes the cont_steps before them), the demo's
    training options, and the MPS run's (r = R, χ)."""

    R: int = 64
    K: int = 16
    steps: int = 30
    save_every: int = 10
    cont_steps: int = 10
    batch_size: int = 16
    max_length: int = 32
    chi: int = 8

    @property
    def window(self) -> tuple[int, int]:
        end = self.steps - self.cont_steps
        return end - self.cont_steps + 1, end

    def labels(self) -> dict[str, str]:
        return {"base": "base", "direct": f"LoRA r={self.K}", "source": f"LoRA r={self.R}", "post": "Post-Squeeze",
                "cont": "Cont-Squeeze", "in": "In-Squeeze", "mps": f"MPS r={self.R}"}


LABELS: dict[str, str] = Setup().labels()
COLOURS = {"direct": "tab:blue", "source": "tab:purple", "post": "tab:cyan", "cont": "tab:olive", "in": "tab:red",
           "mps": "tab:green", "full": "tab:orange", "base": "grey"}


# --------------------------------------------------------------------------- runs


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "demo"


def seed_configs(workdir: Path, seed: int, setup: Setup) -> dict:
    """The fine-tunes of one seed: LoRA r = K and r = R, MPS r = R (the demo's grid) and In-Squeeze R → K."""
    from dataclasses import replace

    from lab.demo import demo_configs

    R, K = setup.R, setup.K
    folder = workdir / "squeeze-seeds" / f"seed-{seed}"
    grid = demo_configs(folder, ranks=(K, R), full=False, steps=setup.steps, save_every=setup.save_every,
                        batch_size=setup.batch_size, max_length=setup.max_length, seed=seed, mps=(R, setup.chi))
    source = grid[f"lora-r{R}"]
    grid["in"] = replace(source, out=str(folder / "finetunes" / f"in-squeeze-r{R}-r{K}"), squeeze_to=K,
                         squeeze_steps=setup.window)
    return {"direct": grid[f"lora-r{K}"], "source": source, "mps": grid[f"mps-r{R}"], "in": grid["in"]}


def _elsewhere(config, workdir: Path, seed: int) -> Path | None:
    """A complete run with the same options already trained by the demo or the valley's seeds."""
    from lab.finetune.train import is_complete

    name = Path(config.out).name
    cache = workdir.parent
    for folder in (workdir / "finetunes" / name if seed == 0 else None,
                   cache / "entanglement_valley" / f"seed-{seed}" / "finetunes" / name):
        if folder is not None and is_complete(folder, config):
            return folder
    return None


def train(workdir: Path, seeds: int, setup: Setup, only: tuple[str, ...] = ("in", "mps", "direct", "source")) -> dict:
    """Every seed's runs by role (trained here unless complete here or elsewhere)."""
    from lab.finetune.train import finetune, is_complete

    found: dict[int, dict[str, Path]] = {}
    for role in only:  # one role over all seeds, then the next: the runs no one else trains come first
        for seed in range(seeds):
            config = seed_configs(workdir, seed, setup)[role]
            folder = Path(config.out) if is_complete(config.out, config) else _elsewhere(config, workdir, seed)
            if folder is None:
                print(f"training {role} seed {seed} -> {config.out}", file=sys.stderr, flush=True)
                folder = finetune(config, overwrite=True)
            found.setdefault(seed, {})[role] = Path(folder)
    return found


def _last_checkpoint(folder: Path) -> Path:
    steps = list(folder.glob("checkpoint-*"))
    return max(steps, key=lambda p: int(p.name.split("-")[1])) if steps else folder


def squeezes(workdir: Path, runs: dict, setup: Setup) -> dict:
    """Post-Squeeze (source's last checkpoint → K) and Cont-Squeeze (its checkpoint T − 10 → K, then
    10 steps) of every seed; redone when the source is newer than what was made from it."""
    from lab.finetune.train import is_complete
    from lab.squeeze.api import squeeze

    for seed, found in runs.items():
        folder = workdir / "squeeze-seeds" / f"seed-{seed}" / "squeezes"
        source = found["source"]
        born = (source / "COMPLETE").stat().st_mtime
        K = setup.K
        post = folder / f"post-r{K}"
        if not (post / "adapter_model.safetensors").is_file() or (post / "adapter_model.safetensors").stat().st_mtime < born:
            squeeze(_last_checkpoint(source), post, rank=K, results=folder / "results", run="squeezes", overwrite=True)
        cont = folder / f"cont-r{K}"
        cont_run = cont.with_name(cont.name + "-steps")
        if not is_complete(cont_run) or (cont_run / "COMPLETE").stat().st_mtime < born:
            squeeze(source / f"checkpoint-{setup.steps - setup.cont_steps}", cont, rank=K, steps=setup.cont_steps,
                    results=folder / "results", run="squeezes", overwrite=True)
        found["post"] = post
        found["cont"] = cont_run
    return runs


# --------------------------------------------------------------------------- measurements


def update_stats(adapter: Path) -> pd.DataFrame:
    """Per module of an adapter's last checkpoint: its rank bound k, the entropy S of its normalised
    squared singular values (= the row|column cut's entanglement entropy), ln k, the effective rank
    exp(S) and ‖ΔW‖_F, from the exact SVD of its factors."""
    from lab.kernels.factored import core_singular_values
    from lab.squeeze.targets import read_input

    rows = []
    for t in read_input(_last_checkpoint(adapter)).targets:
        sigma = core_singular_values(t.update)
        p = sigma ** 2 / float((sigma ** 2).sum())
        p = p[p > 0]
        entropy = float(-(p * np.log(p)).sum())
        rows.append({"module": t.module, "k": t.update.rank_bound, "entropy": entropy, "ln_k": math.log(t.update.rank_bound),
                     "effective_rank": math.exp(entropy), "fro_norm": float(np.sqrt((sigma ** 2).sum()))})
    return pd.DataFrame(rows)


def held_out_loss(adapter: Path | None, record: dict, n_texts: int, cache: dict) -> float:
    """Mean InfoNCE loss (the runs' τ, in-batch negatives, batches of 16 in a seeded order) on the
    docstring pairs after the first max_docs (never trained on), for the base (``None``) or an
    adapter's last checkpoint (PEFT LoRA or MPS)."""
    import torch

    from lab.finetune.corpus import contrastive_pairs
    from lab.finetune.models import load_model, minilm_path, resolve_base
    from lab.finetune.objectives import Batches, loss

    ckpt = _last_checkpoint(adapter) if adapter is not None else None
    key = f"{ckpt}|{(ckpt / ('mps_adapter_model.safetensors' if (ckpt / 'mps_adapter_config.json').is_file() else 'adapter_model.safetensors')).stat().st_mtime}" if ckpt else "base"
    key += f"|{n_texts}"
    if key in cache:
        return cache[key]["loss"]
    held = _held_out_docs(record["max_docs"], n_texts)
    if len(held) < 32:
        raise SystemExit(f"only {len(held)} held-out docstring pairs beyond the first {record['max_docs']}: too few to measure a loss")
    base = resolve_base(str(minilm_path()))
    torch.set_num_threads(1)
    model, tok = load_model(base)
    if ckpt is not None and (ckpt / "mps_adapter_config.json").is_file():
        from lab.finetune.mps import load_mps

        model = load_mps(model, ckpt)
    elif ckpt is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ckpt)
    model.eval()
    batches = Batches(held, tok, base.objective, 16, record["max_length"], 0)
    # a seeded shuffle, as training batches are drawn: consecutive docstrings share a module and
    # would make every batch's negatives unusually hard
    pairs = contrastive_pairs(held)
    pairs = [pairs[i] for i in np.random.default_rng(0).permutation(len(pairs))]
    with torch.no_grad():
        values = [float(loss(model, batches.make(pairs[i:i + 16]), record["temperature"])) for i in range(0, len(pairs) - 15, 16)]
    cache[key] = {"loss": float(np.mean(values)), "batches": len(values)}
    cache["batches"] = len(values)  # the same held-out set for every model
    return cache[key]["loss"]


@functools.lru_cache(maxsize=4)
def _held_out_docs(seen: int, n_texts: int) -> list:
    """The titled docstrings after the first ``seen`` (the ones the runs train on), collected once."""
    from lab.finetune.corpus import stdlib_docstrings

    return [d for d in stdlib_docstrings(limit=seen + n_texts)[seen:] if d.title]


def final_train_loss(folder: Path) -> float:
    """Mean training loss over a run's last five logged steps."""
    losses = [json.loads(line)["loss"] for line in (folder / "loss.jsonl").read_text().splitlines()]
    return float(np.mean(losses[-5:]))


def measure_seeds(workdir: Path, runs: dict, n_texts: int) -> dict:
    """Per seed and role: held-out loss, the update's entropy and effective rank (mean over modules)."""
    cache_file = workdir / "squeeze-seeds" / "held_out.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    record = json.loads((runs[0]["direct"] / "finetune_config.json").read_text())["options"]
    rows, modules = [], []
    try:
        base_loss = held_out_loss(None, record, n_texts, cache) if n_texts else float("nan")
        for seed, found in sorted(runs.items()):
            for role in ("direct", "source", "post", "cont", "in", "mps"):
                if role not in found:
                    continue
                stats = update_stats(found[role]).assign(seed=seed, role=role)
                modules.append(stats)
                train_folder = found[role]
                rows.append({"seed": seed, "role": role,
                             "held_out_loss": held_out_loss(found[role], record, n_texts, cache) if n_texts else float("nan"),
                             "base_loss": base_loss,
                             "train_loss": final_train_loss(train_folder) if (train_folder / "loss.jsonl").is_file() else float("nan"),
                             "entropy": stats.entropy.mean(), "gap_to_ln_k": (stats.ln_k - stats.entropy).mean(),
                             "effective_rank": stats.effective_rank.mean(), "fro_norm": stats.fro_norm.mean(),
                             "k": int(stats.k.max())})
    finally:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1) + "\n")
    return {"per_seed": pd.DataFrame(rows), "modules": pd.concat(modules, ignore_index=True), "record": record,
            "batches": cache.get("batches", 0)}


def summary(per_seed: pd.DataFrame, column: str) -> pd.DataFrame:
    """mean ± sd over seeds of ``column`` by role, with the per-seed values."""
    g = per_seed.groupby("role", sort=False)[column]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["values"] = [", ".join(f"{v:.4f}" for v in per_seed[per_seed.role == r].sort_values("seed")[column]) for r in out.role]
    return out


def separated(a: pd.Series, b: pd.Series) -> bool:
    """Whether the intervals mean ± sd of two sets of per-seed values do not overlap."""
    return bool(a.mean() + a.std() < b.mean() - b.std() or b.mean() + b.std() < a.mean() - a.std())


def compare(per_seed: pd.DataFrame, column: str, a: str, b: str, digits: int = 4) -> str:
    """One sentence: a against b on ``column``, mean ± sd, the paired difference, and whether separated."""
    x = per_seed[per_seed.role == a].sort_values("seed")[column].reset_index(drop=True)
    y = per_seed[per_seed.role == b].sort_values("seed")[column].reset_index(drop=True)
    n = min(len(x), len(y))
    d = (x[:n] - y[:n])
    verdict = (f"{'lower' if x.mean() < y.mean() else 'higher'} — separated at {n} seeds" if separated(x, y)
               else f"not separated at {n} seeds")
    if not separated(x, y) and n > 1 and (np.sign(d) == np.sign(d.mean())).all() and abs(d.mean()) > 2 * d.std():
        # runs of one seed share the data order and the initialisation: the paired view, said apart
        verdict += (f" (paired by seed, which shares data order and initialisation, {'lower' if d.mean() < 0 else 'higher'} "
                    f"in {n}/{n} seeds, by more than twice the differences' sd)")
    return (f"{LABELS[a]} {x.mean():.{digits}f} ± {x.std():.{digits}f} against {LABELS[b]} {y.mean():.{digits}f} ± "
            f"{y.std():.{digits}f} (paired difference {d.mean():+.{digits}f} ± {d.std():.{digits}f}; per seed "
            f"{', '.join(f'{v:+.{digits}f}' for v in d)}): {verdict}")


# --------------------------------------------------------------------------- MPS profiles


def profiles(runs: dict, setup: Setup) -> dict:
    """Every seed's entanglement profiles (lab.probes.entanglement on the factors) of LoRA r = K,
    r = R and MPS r = R, χ's bound at every cut of the MPS chain, and per seed the mean entropy at the
    cuts where χ's bound governs."""
    from lab.finetune.mps_layout import cut_bounds
    from lab.probes.entanglement import entanglement_profile
    from lab.squeeze.targets import read_input

    rows = []
    for seed, found in sorted(runs.items()):
        for role in ("direct", "source", "mps"):
            for t in read_input(_last_checkpoint(found[role])).targets:
                p = entanglement_profile(t.update)
                rows += [{"seed": seed, "role": role, "module": t.module, "cut": int(c), "entropy": float(e), "page": float(g),
                          "max_entropy": float(m), "row_sites": p.sites.row_sites}
                         for c, e, g, m in zip(p.cuts, p.entropy, p.page_entropy, p.max_entropy)]
    prof = pd.DataFrame(rows)
    config = json.loads((_last_checkpoint(runs[0]["mps"]) / "mps_adapter_config.json").read_text())
    cols = config["d1"] * config["d2"]
    mps0 = read_input(_last_checkpoint(runs[0]["mps"])).targets[0].update
    b = cut_bounds(mps0.shape[0], config["d1"], config["d2"], config["chi"], config["r"])
    bound = pd.DataFrame({"cut": b.cuts, "bound": b.entropy_bound, "governed": b.governed})
    q = prof[prof.role == "mps"].merge(bound, on="cut")
    gov = q[q.governed]
    at = (prof[prof.cut.isin(bound[bound.governed].cut)].groupby(["seed", "role"]).entropy.mean()
          .rename("entropy_governed").reset_index())
    return {"config": config, "rows": mps0.shape[0], "cols": cols, "bounds": bound, "profiles": prof, "at_governed": at,
            "held": int((q.entropy <= q.bound + TOL).sum()), "pairs": int(len(q)),
            "governed_cuts": bound[bound.governed].cut.tolist(),
            "slack": float((gov.bound - gov.entropy).min()) if len(gov) else float("nan"),
            "slack_mean": float((gov.bound - gov.entropy).mean()) if len(gov) else float("nan")}


# --------------------------------------------------------------------------- output


def plot(found: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = found["per_seed"]
    R, K = found["setup"].R, found["setup"].K
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    roles = ["direct", "post", "cont", "in", "source", "mps"]
    for i, role in enumerate(roles):
        v = per[per.role == role].held_out_loss
        ax.errorbar(i, v.mean(), yerr=v.std(), fmt="o", color=COLOURS[role], capsize=6, ms=8)
        ax.scatter(np.full(len(v), i) + 0.15, v, color=COLOURS[role], s=14, alpha=0.7)
    ax.axhline(per.base_loss.iloc[0], color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(roles)), [LABELS[r] for r in roles], rotation=20)
    ax.set(ylabel="held-out InfoNCE (mean ± sd; dots: seeds)", title=f"Held-out loss at equal steps, {found['seeds']} seeds")

    ax = axes[0, 1]
    for i, role in enumerate(roles):
        v = per[per.role == role].entropy
        ax.errorbar(i, v.mean(), yerr=v.std(), fmt="o", color=COLOURS[role], capsize=6, ms=8)
        ax.scatter(np.full(len(v), i) + 0.15, v, color=COLOURS[role], s=14, alpha=0.7)
    ax.axhline(math.log(K), color="k", ls="--", lw=0.8, label=f"ln {K}")
    ax.axhline(math.log(R), color="k", ls=":", lw=0.8, label=f"ln {R}")
    ax.set_xticks(range(len(roles)), [LABELS[r] for r in roles], rotation=20)
    ax.set(ylabel="entropy at the row|column cut (nats)", title="ΔW's entanglement at the row|column cut (mean over modules)")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    for role, folder in found["runs"][0].items():
        log = folder / "loss.jsonl"
        if role in ("post",) or not log.is_file():
            continue
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=COLOURS[role], label=LABELS[role], lw=1.2)
    ax.set(xlabel="step", ylabel="training loss (InfoNCE)", title=f"Training loss, seed 0 (Cont-Squeeze: its {found['setup'].cont_steps} steps after the squeeze)")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    m = found["mps"]
    prof = m["profiles"].groupby(["role", "cut"], sort=False).agg(
        entropy=("entropy", "mean"), page=("page", "mean"), row_sites=("row_sites", "first")).reset_index()
    for role, g in prof.groupby("role", sort=False):
        ax.plot(g.cut, g.entropy, marker="o", ms=3, color=COLOURS[role], label=LABELS[role])
    g = prof[prof.role == "source"]
    ax.plot(g.cut, g.page, "k--", lw=1, label="Page (random matrix)")
    ax.axvline(int(g.row_sites.iloc[0]), color="grey", lw=0.6)
    gov = m["bounds"][m["bounds"].governed]
    ax.scatter(gov.cut, gov.bound, marker="_", s=300, color="tab:red", zorder=5, label="χ bound where it governs")
    ax.set(xlabel="cut k (row sites | column sites)", ylabel="entropy (nats)",
           title=f"ΔW's entanglement profile (mean over modules and {found['seeds']} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(df: pd.DataFrame, cols: list[str], fmt: dict[str, str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = ["| " + " | ".join(fmt.get(c, "{}").format(v) for c, v in zip(cols, row)) + " |" for row in df[cols].itertuples(index=False)]
    return head + "\n".join(lines) + "\n"


def markdown(found: dict, figure: str) -> str:
    from lab.finetune.mps_layout import trainable_params

    per, n, setup = found["per_seed"], found["seeds"], found["setup"]
    R, K, CONT_STEPS = setup.R, setup.K, setup.cont_steps
    s1, s2 = setup.window
    out = [f"# MPS Adaptation and LoRA-Squeeze's three variants on MiniLM ({n} seeds)\n\n![figure]({figure})\n\n",
           f"Measured by `analyses/mps_and_squeeze.py --seeds {n}` (all-MiniLM-L6-v2, attention query and value, Python's "
           f"docstrings, {found['steps']} steps of batch {setup.batch_size} per run, the demo's settings, seeds 0–{n - 1}). Values are "
           "mean ± sd over seeds, then the per-seed values; two results are called separated only when their "
           "intervals mean ± sd do not overlap, else \"not separated\" (where the differences paired by seed all have one sign and exceed twice their sd, that is said beside). Held-out loss: InfoNCE (τ = 0.05) on "
           f"{found['batches']} batches of 16 docstring pairs after the {found['record']['max_docs']} the runs train on; base "
           f"{per.base_loss.iloc[0]:.4f}.\n\n"]

    out.append(f"## LoRA-Squeeze: Post-, Cont- and In-Squeeze at rank {K}, {found['steps']} steps each\n\n")
    out.append(f"The variants as the paper names them (arXiv 2602.10993; its abstract: \"post-hoc compression often "
               f"produces lower-rank adapters that outperform those trained directly at the target rank, especially if a "
               f"small number of fine-tuning steps at the target rank is allowed. Moreover, a gradual, in-tuning rank "
               f"annealing variant of LoRA-Squeeze consistently achieves the best LoRA size-performance trade-off\"), "
               f"each ending at rank {K} after {found['steps']} optimiser steps:\n\n"
               f"* **LoRA r={K}**: trained directly at rank {K} (α = {2 * K}).\n"
               f"* **Post-Squeeze**: LoRA r = {R} (α = {2 * R}) trained {found['steps']} steps, its update truncated to rank {K} "
               f"by the exact SVD from its factors (`lab squeeze --rank {K}`).\n"
               f"* **Cont-Squeeze**: the same LoRA r = {R} at step {found['steps'] - CONT_STEPS}, squeezed to rank {K}, then "
               f"{CONT_STEPS} steps at rank {K} at the source's scale α/r = 2, continuing its data order (`lab squeeze "
               f"--rank {K} --steps {CONT_STEPS}`).\n"
               f"* **In-Squeeze**: LoRA r = {R} whose update is truncated by its SVD during training, linearly from {R} to "
               f"{K} over steps {s1}–{s2} (the paper's exact "
               f"schedule was not in the text the lab could read; lab/finetune/insqueeze.py documents the linear one), "
               f"AdamW restarted at each truncation, then {CONT_STEPS} steps at rank {K} (`lab finetune --r {R} "
               f"--squeeze-to {K} --squeeze-steps {s1}:{s2}`).\n\n")
    held = summary(per, "held_out_loss")
    held["role"] = held.role.map(LABELS)
    out.append("Held-out loss:\n\n" + _table(held, ["role", "mean", "std", "values"], {"mean": "{:.4f}", "std": "{:.4f}"}))
    out.append("\n**Findings (held-out loss):**\n\n")
    for a in ("post", "cont", "in"):
        out.append(f"* {compare(per, 'held_out_loss', a, 'direct')}.\n")
    out.append(f"* {compare(per, 'held_out_loss', 'in', 'post')}.\n")
    out.append(f"* {compare(per, 'held_out_loss', 'in', 'cont')}.\n")
    out.append(f"* {compare(per, 'held_out_loss', 'cont', 'post')}.\n")
    out.append(f"* {compare(per, 'held_out_loss', 'post', 'source')} (what the truncation costs).\n")
    ent = summary(per, "entropy")
    ent["role"] = ent.role.map(LABELS)
    out.append("\nEntropy of ΔW at the row|column cut (nats, mean over the 12 modules per seed):\n\n"
               + _table(ent, ["role", "mean", "std", "values"], {"mean": "{:.3f}", "std": "{:.3f}"}))
    out.append("\n**Findings (the update's spectrum):**\n\n")
    for a in ("post", "cont", "in"):
        out.append(f"* {compare(per, 'entropy', a, 'direct', 3)}.\n")
    out.append(f"* {compare(per, 'effective_rank', 'in', 'post', 2)} (effective rank exp(S)).\n")
    gap = summary(per, "gap_to_ln_k").set_index("role")
    out.append(f"* How far below its bound ln {K} = {math.log(K):.3f}: " + "; ".join(
        f"{LABELS[r]} {gap.loc[r, 'mean']:.3f} ± {gap.loc[r, 'std']:.3f}" for r in ("direct", "post", "cont", "in")) + " nats.\n")
    mods = found["modules"]
    sq = mods[mods.role.isin(["direct", "post", "cont", "in"])]
    ok = int((sq.entropy <= sq.ln_k + TOL).sum())
    out.append(f"\n*Sanity check* (an identity, not a finding): S ≤ ln k at the row|column cut for every module of the "
               f"rank-{K} adapters — {'passed' if ok == len(sq) else 'FAILED'} ({ok}/{len(sq)}); every final adapter has "
               f"rank {K} ({'passed' if set(per[per.role.isin(VARIANTS)].k) == {K} else 'FAILED'}).\n")

    out.append(f"\n## MPS Adaptation against LoRA at r = {R}\n\n")
    mps = found["mps"]
    c = mps["config"]
    out.append(f"* Held-out loss: {compare(per, 'held_out_loss', 'mps', 'source')}.\n")
    out.append(f"* Entropy at the row|column cut: {compare(per, 'entropy', 'mps', 'source', 3)}.\n")
    at = mps["at_governed"]
    out.append(f"* Mean entropy at the cuts where χ's bound governs ({mps['governed_cuts']}, inside the input sites): "
               f"{compare(at, 'entropy_governed', 'mps', 'source', 3)}; the mean slack to χ's bound there is "
               f"{mps['slack_mean']:.3f} nats (smallest {mps['slack']:.3f}).\n")
    out.append(f"* Training loss (mean of the last five steps): {compare(per, 'train_loss', 'mps', 'source')}.\n")
    per_module = trainable_params(mps["rows"], c["d1"], c["d2"], c["chi"], c["r"])
    out.append(f"* Parameters: {per_module:,} per {mps['rows']}×{mps['cols']} module (B {mps['rows'] * c['r']:,} + C1 "
               f"{c['r'] * c['d1'] * c['chi']:,} + C2 {c['chi'] * c['d2']:,}) against LoRA's {c['r'] * (mps['rows'] + mps['cols']):,} "
               f"({per_module / (c['r'] * (mps['rows'] + mps['cols'])):.2f}×); the paper's 4096-wide setting, r = 256, "
               f"χ = 32, 64·64: {trainable_params(4096, 64, 64, 32, 256):,} vs {256 * 8192:,}.\n")
    out.append(f"\n*Sanity check* (an identity, not a finding): the MPS update's entropy is at most the bound of χ, r and "
               f"the dimensions at every cut (r = {c['r']}, χ = {c['chi']}, d1·d2 = {c['d1']}·{c['d2']}) — "
               f"{'passed' if mps['held'] == mps['pairs'] else 'FAILED'} ({mps['held']}/{mps['pairs']} (seed, module, cut) triples).\n")
    out.append("\n## Per seed\n\n")
    table = per.copy()
    table["role"] = table.role.map(LABELS)
    out.append(_table(table, ["seed", "role", "k", "held_out_loss", "train_loss", "entropy", "effective_rank", "fro_norm"],
                      {"held_out_loss": "{:.4f}", "train_loss": "{:.4f}", "entropy": "{:.3f}", "effective_rank": "{:.2f}",
                       "fro_norm": "{:.4f}"}))
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of every run (at least 3 for a comparison)")
    d = Setup()
    parser.add_argument("--ranks", default=f"{d.R}:{d.K}", help="R:K, the LoRA rank squeezed and the target rank (default the demo's)")
    parser.add_argument("--steps", type=int, default=d.steps, help="optimiser steps of every run")
    parser.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint interval (steps − cont-steps must be one)")
    parser.add_argument("--cont-steps", type=int, default=d.cont_steps, help="Cont-Squeeze's steps at K (In-Squeeze anneals over the ones before them)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--max-length", type=int, default=d.max_length)
    parser.add_argument("--chi", type=int, default=d.chi, help="the MPS run's bond dimension (r = R)")
    parser.add_argument("--workdir", type=Path, default=None, help="lab demo's workdir (default: the user cache dir, lab/demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for mps_and_squeeze.png and .md")
    parser.add_argument("--held-out", type=int, default=512, help="docstrings after the training set to measure the held-out loss on")
    parser.add_argument("--train-only", action="store_true", help="train and squeeze the seeds' runs, write nothing else")
    args = parser.parse_args(argv)
    R, K = (int(x) for x in args.ranks.split(":"))
    setup = Setup(R, K, args.steps, args.save_every, args.cont_steps, args.batch_size, args.max_length, args.chi)
    if args.seeds < 2:
        raise SystemExit("--seeds must be at least 2 (a spread needs two; a comparison wants 3 or more)")
    if (setup.steps - setup.cont_steps) % setup.save_every or setup.window[0] < 1:
        raise SystemExit("--steps minus --cont-steps must be a multiple of --save-every and at least --cont-steps")
    LABELS.update(setup.labels())
    steps = setup.steps
    workdir = args.workdir or default_workdir()
    runs = squeezes(workdir, train(workdir, args.seeds, setup), setup)
    if args.train_only:
        return 0
    found = measure_seeds(workdir, runs, args.held_out)
    found.update(seeds=args.seeds, steps=steps, runs=runs, setup=setup)
    found["mps"] = profiles(runs, setup)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(found, args.out / "mps_and_squeeze.png")
    (args.out / "mps_and_squeeze.md").write_text(markdown(found, "mps_and_squeeze.png"))
    print(f"wrote {args.out / 'mps_and_squeeze.png'} and {args.out / 'mps_and_squeeze.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
