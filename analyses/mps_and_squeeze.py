"""MPS Adaptation and LoRA-Squeeze, measured on lab demo's runs.

Two methods from the papers the lab is built on:

* MPS Adaptation (Artificial Entanglement, arXiv 2601.06788): ΔW = (α/r)·B·A_MPS with
  A_MPS[a, (i1, i2)] = Σ_c C1[a, i1, c]·C2[c, i2] (bond χ, d_in = d1·d2). The paper says it
  "exhibits qualitatively similar behaviors" to LoRA. Questions: does its update show the
  entanglement valley at the row|column cut? Where does χ bound the entropy, and does the bound
  hold? (ΔW reshaped with the d2 input sites on the right is Σ_c (B·C1[:, :, c]) ⊗ C2[c]: rank ≤ χ
  at that cut, ≤ χ·q when q more sites join the right block, ≤ χ·t inside the d2 sites;
  lab/finetune/mps_layout.py derives every cut's bound, the smallest of χ's, LoRA's r-bound and
  min(D_left, D_right).)
* LoRA-Squeeze: train at r = 64, compress to r = 16 by the SVD of the update, against the adapter
  trained directly at r = 16: held-out loss, entanglement and spectra.

Reads the runs of ``lab demo`` through lab's public API (``lab.store``; the demo is run first when
they are missing) and writes ``mps_and_squeeze.png`` and ``mps_and_squeeze.md``: numbers as
measured, agreeing with the papers or not.

    python analyses/mps_and_squeeze.py [--workdir DIR] [--out DIR] [--held-out N]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lab.store import list_runs

ROOT = Path(__file__).resolve().parent
TOL = 1e-9
COLOURS = {"direct": "tab:blue", "source": "tab:purple", "full": "tab:orange", "mps": "tab:green", "squeeze": "tab:cyan"}


def roles(runs) -> dict[str, str]:
    """Which run plays which part: the MPS run, the squeezed adapter, the LoRA it was squeezed from
    (source), the LoRA trained directly at the squeezed rank (direct), and the full fine-tune."""
    names = set(runs)
    out = {}
    mps = sorted(n for n in names if n.startswith("mps-r"))
    sq = sorted(n for n in names if n.startswith("squeeze-r"))
    if sq:
        out["squeeze"] = sq[0]
        k = int(sq[0].rsplit("r", 1)[1])
        sources = sorted((int(n.rsplit("r", 1)[1]) for n in names if n.startswith("lora-r")), reverse=True)
        if f"lora-r{k}" in names:
            out["direct"] = f"lora-r{k}"
        if sources and sources[0] > k:
            out["source"] = f"lora-r{sources[0]}"
    if mps:
        out["mps"] = mps[0]
    if "full" in names:
        out["full"] = "full"
    return out


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "demo"


def load(workdir: Path) -> dict[str, object]:
    """The demo's complete runs by name (running ``lab demo``'s grid first when MPS or the squeeze is missing)."""
    runs = {r.name: r for r in list_runs(workdir / "results") if r.complete} if (workdir / "results").is_dir() else {}
    if not {"mps", "squeeze", "source"} <= set(roles(runs)):
        from lab.demo import DEMO_MPS, DEMO_SQUEEZE, run_demo

        print(f"the MPS and squeeze runs are missing under {workdir}; running `lab demo` there first", file=sys.stderr)
        run_demo(workdir, mps=DEMO_MPS, squeeze=DEMO_SQUEEZE, report=False)
        runs = {r.name: r for r in list_runs(workdir / "results") if r.complete}
    return runs


def _last(t: pd.DataFrame) -> pd.DataFrame:
    """Rows of the run's last checkpoint (a squeezed adapter has no step: all of it)."""
    if t.step.notna().any():
        return t[t.step == t.step.max()]
    return t


def mps_bounds(workdir: Path, profiles: pd.DataFrame) -> dict:
    """χ's bound at every cut of the MPS run's profiles: how often it governs, and whether it held."""
    from lab.finetune.mps_layout import cut_bounds

    ckpt = _last_checkpoint(workdir / "finetunes" / profiles.run.iloc[0])
    config = json.loads((ckpt / "mps_adapter_config.json").read_text())
    rows, cols = int(profiles.d_left.iloc[0] * profiles.d_right.iloc[0] // (config["d1"] * config["d2"])), config["d1"] * config["d2"]
    b = cut_bounds(rows, config["d1"], config["d2"], config["chi"], config["r"])
    bound = pd.DataFrame({"cut": b.cuts, "bound": b.entropy_bound, "governed": b.governed, "bound_d_right": b.d_right})
    p = profiles.merge(bound, on="cut")
    gov = p[p.governed]
    return {"config": config, "rows": rows, "cols": cols, "bounds": bound,
            "held": int((p.entropy <= p.bound + TOL).sum()), "pairs": int(len(p)),
            "governed_held": int((gov.entropy <= gov.bound + TOL).sum()), "governed_pairs": int(len(gov)),
            "governed_cuts": bound[bound.governed].cut.tolist(),
            "d2_cut": int(bound[bound.bound_d_right == config["d2"]].cut.iloc[0]),
            "at_d2_cut": p[p.d_right == config["d2"]].entropy.agg(["mean", "max"]).to_dict(),
            "slack": float((gov.bound - gov.entropy).min()) if len(gov) else float("nan")}


def held_out_losses(workdir: Path, names: list[str], n_texts: int) -> pd.DataFrame:
    """Mean InfoNCE loss (the demo's τ, in-batch negatives, batches of 16 in a seeded order) on docstring
    pairs the demo never trained on (the ones after its first max_docs), for the base and each run's
    last checkpoint."""
    import torch

    from lab.finetune.corpus import contrastive_pairs, stdlib_docstrings
    from lab.finetune.models import load_model, minilm_path, resolve_base
    from lab.finetune.objectives import Batches, loss

    record = json.loads((workdir / "finetunes" / names[0] / "finetune_config.json").read_text())["options"]
    seen = record["max_docs"]
    docs = stdlib_docstrings(limit=seen + n_texts)[seen:]
    held = [d for d in docs if d.title]
    if len(held) < 32:
        raise SystemExit(f"only {len(held)} held-out docstring pairs beyond the first {seen}: too few to measure a loss")
    base = resolve_base(str(minilm_path()))
    out = []
    torch.set_num_threads(1)
    for name in ["base"] + names:
        model, tok = load_model(base)
        if name != "base":
            ckpt = _last_checkpoint(workdir / "finetunes" / name)
            if (ckpt / "mps_adapter_config.json").is_file():
                from lab.finetune.mps import load_mps

                model = load_mps(model, ckpt)
            elif (ckpt / "adapter_config.json").is_file():
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, ckpt)
            else:  # a full checkpoint holds no tokenizer: keep the base's (the one it was trained with)
                model, _ = load_model(resolve_base(str(ckpt)))
        model.eval()
        batches = Batches(held, tok, base.objective, 16, record["max_length"], 0)
        # a seeded shuffle, as training batches are drawn: consecutive docstrings share a module and
        # would make every batch's negatives unusually hard
        pairs = [contrastive_pairs(held)[i] for i in np.random.default_rng(0).permutation(len(contrastive_pairs(held)))]
        values = []
        with torch.no_grad():
            for i in range(0, len(pairs) - 15, 16):
                values.append(float(loss(model, batches.make(pairs[i:i + 16]), record["temperature"])))
        out.append({"run": name, "held_out_loss": float(np.mean(values)), "batches": len(values)})
    return pd.DataFrame(out)


def _last_checkpoint(folder: Path) -> Path:
    steps = list(folder.glob("checkpoint-*"))
    return max(steps, key=lambda p: int(p.name.split("-")[1])) if steps else folder


def training(workdir: Path, runs: dict, names: list[str]) -> pd.DataFrame:
    """Per run: trainable parameters (sum of the deltas table's params at the last step), loss curve."""
    out = []
    for name in names:
        log = workdir / "finetunes" / name / "loss.jsonl"
        if not log.is_file():
            continue
        losses = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
        params = int(_last(runs[name].table("deltas")).params.sum())
        out.append({"run": name, "params": params, "steps": len(losses), "first_loss": losses[0],
                    "final_loss": float(np.mean(losses[-5:])), "losses": losses})
    return pd.DataFrame(out)


def measure(workdir: Path, runs: dict, n_texts: int) -> dict:
    role = roles(runs)
    names = [role[k] for k in ("direct", "source", "full", "mps", "squeeze") if k in role]
    summary = pd.concat([_last(runs[n].table("entanglement_summary")) for n in names], ignore_index=True)
    summary = summary[summary.source == "delta"]
    profiles = pd.concat([_last(runs[n].table("entanglement")) for n in names], ignore_index=True)
    profiles = profiles[profiles.source == "delta"]
    spectra = pd.concat([_last(runs[n].table("spectra")) for n in names], ignore_index=True)
    spectra = spectra[spectra.source == "delta"]
    found = {"names": names, "roles": role, "colours": {role[k]: c for k, c in COLOURS.items() if k in role}}
    found["valley"] = (summary.groupby("run", sort=False)
                       .agg(modules=("valley_entropy", "size"), rank_bound=("rank_bound", "first"),
                            entropy=("valley_entropy", "mean"), entropy_max=("valley_entropy", "max"),
                            page=("valley_page_entropy", "mean"), depth=("valley_depth", "mean"))
                       .reindex(names).reset_index())
    found["valley"]["ln_r"] = np.log(found["valley"].rank_bound)
    found["spectra"] = (spectra.groupby("run", sort=False)
                        .agg(effective_rank=("effective_rank", "mean"), stable_rank=("stable_rank", "mean"),
                             entropy_rank=("entropy_rank", "mean"), energy_rank_90=("energy_rank_90", "mean"),
                             energy_rank_99=("energy_rank_99", "mean"), fro_norm=("fro_norm", "mean"))
                        .reindex(names).reset_index())
    found["profiles"] = (profiles.groupby(["run", "cut"], sort=False)
                         .agg(entropy=("entropy", "mean"), page=("page_entropy", "mean"), max_entropy=("max_entropy", "mean"),
                              row_sites=("row_sites", "first")).reset_index())
    if "mps" in role:
        found["mps"] = mps_bounds(workdir, profiles[profiles.run == role["mps"]])
    found["training"] = training(workdir, runs, names)
    squeeze_table = workdir / "squeezes" / "squeezes" / "squeeze.parquet"
    found["squeeze"] = pd.read_parquet(squeeze_table) if squeeze_table.is_file() and "squeeze" in role else None
    found["held_out"] = held_out_losses(workdir, names, n_texts) if n_texts else None
    return found


def plot(found: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = found["colours"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    prof = found["profiles"]
    for name, g in prof.groupby("run", sort=False):
        ax.plot(g.cut, g.entropy, marker="o", ms=3, color=colours.get(name), label=name)
    g = prof[prof.run == prof.run.iloc[0]]
    ax.plot(g.cut, g.page, "k--", lw=1, label="Page (random matrix)")
    ax.plot(g.cut, g.max_entropy, color="grey", lw=0.8, ls=":", label="ln min(D_left, D_right)")
    ax.axvline(int(g.row_sites.iloc[0]), color="grey", lw=0.6)
    if "mps" in found:
        b = found["mps"]["bounds"]
        gov = b[b.governed]
        ax.scatter(gov.cut, gov.bound, marker="_", s=300, color="tab:red", zorder=5, label="χ bound where it governs")
    ax.set(xlabel="cut k (row sites | column sites)", ylabel="entropy (nats)", title="Entanglement profile of ΔW (mean over modules, last step)")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    tr = found["training"]
    for row in tr.itertuples():
        ax.plot(np.arange(1, row.steps + 1), row.losses, color=colours.get(row.run), label=f"{row.run} ({row.params:,} params)")
    ax.set(xlabel="step", ylabel="training loss (InfoNCE)", title="Training loss, with trainable parameters")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    for row in tr.itertuples():
        ax.scatter(row.params, row.final_loss, color=colours.get(row.run), s=50)
        ax.annotate(row.run, (row.params, row.final_loss), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log)", ylabel="mean loss, last 5 steps", title="Loss per trainable parameter")

    ax = axes[1, 1]
    held = found["held_out"]
    if held is not None:
        ax.bar(held.run, held.held_out_loss, color=[colours.get(n, "grey") for n in held.run])
        lo = held.held_out_loss.min()
        ax.set_ylim(lo * 0.97, held.held_out_loss.max() * 1.01)
        ax.set(ylabel="held-out InfoNCE", title="Held-out loss: squeezed vs trained at the same rank")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(df: pd.DataFrame, cols: list[str], fmt: dict[str, str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = []
    for row in df[cols].itertuples(index=False):
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(v) for c, v in zip(cols, row)) + " |")
    return head + "\n".join(lines) + "\n"


def markdown(found: dict, figure: str) -> str:
    from lab.finetune.mps_layout import trainable_params

    v = found["valley"].set_index("run")
    role = found["roles"]
    mps, src, direct, sqz = (role.get(k, "") for k in ("mps", "source", "direct", "squeeze"))
    out = [f"# MPS Adaptation and LoRA-Squeeze on MiniLM\n\n![figure]({figure})\n\n",
           "Measured by `analyses/mps_and_squeeze.py` on `lab demo`'s runs (all-MiniLM-L6-v2, attention query and "
           "value, Python's docstrings, last checkpoint of each run).\n\n",
           "## Entanglement at the row|column cut\n\n",
           _table(found["valley"], ["run", "modules", "rank_bound", "entropy", "entropy_max", "ln_r", "page", "depth"],
                  {"entropy": "{:.3f}", "entropy_max": "{:.3f}", "ln_r": "{:.3f}", "page": "{:.3f}", "depth": "{:.3f}"})]
    if "mps" in found:
        m = found["mps"]
        c = m["config"]
        same_r = f"lora-r{c['r']}"
        lora_depth = v.loc[same_r, "depth"] if same_r in v.index else float("nan")
        similar = abs(v.loc[mps, "depth"] - lora_depth) / lora_depth if lora_depth == lora_depth else float("nan")
        out.append(
            f"\n**MPS valley.** The MPS update (r = {c['r']}, χ = {c['chi']}, d1·d2 = {c['d1']}·{c['d2']}) has mean entropy "
            f"{v.loc[mps, 'entropy']:.3f} nats at the row|column cut (ln r = {math.log(c['r']):.3f}, Page "
            f"{v.loc[mps, 'page']:.3f}): a valley {v.loc[mps, 'depth']:.3f} nats deep, against "
            f"{lora_depth:.3f} for LoRA at the same r ({similar:.0%} apart). "
            + ("The paper's 'qualitatively similar' holds for the valley here." if similar < 0.25 else
               "That is not 'qualitatively similar' to LoRA's in depth: the paper's claim does not hold on this measurement.") + "\n")
        out.append(
            f"\n**Where χ bounds the entropy, and why.** ΔW[(o, i1), i2] = (α/r)·Σ_c (B·C1[:, :, c])[o, i1]·C2[c, i2]: "
            f"reshaped with the {c['d2']} = d2 input sites on the right (cut {m['d2_cut']} of the {m['rows']}×{m['cols']} chain), "
            f"it is a sum of χ = {c['chi']} products, so its rank is at most χ and S ≤ ln χ = {math.log(c['chi']):.3f}. "
            f"Moving the cut left by sites whose product is q multiplies the bound by q (χ·q); moving it right into the d2 "
            f"sites, the bound is χ·t with t the d2 sites moved left. χ governs (is below ln r's bound and "
            f"ln min(D_left, D_right)) at cuts {m['governed_cuts']}. The bound held at {m['governed_held']} of "
            f"{m['governed_pairs']} (module, cut) pairs where it governs and at {m['held']} of {m['pairs']} pairs overall; "
            f"at the d1|d2 cut the entropy is {m['at_d2_cut']['mean']:.3f} on average (largest {m['at_d2_cut']['max']:.3f}) "
            f"against ln χ = {math.log(c['chi']):.3f}; the smallest slack at a governed cut is {m['slack']:.3g} nats.\n")
        prof = found["profiles"]
        at = prof[prof.cut.isin(m["governed_cuts"])].groupby("run").entropy.mean()
        if same_r in at.index:
            lower = at[mps] < at[same_r]
            out.append(f"\nAt those cuts the MPS profile averages {at[mps]:.3f} nats against {at[same_r]:.3f} for {same_r}"
                       + (": χ visibly shapes the input side of the profile, where LoRA's follows its r-bound and the data. "
                          "The valley is similar; the profile beside it is not." if lower else
                          ": χ's bound does not make the MPS profile lower than LoRA's there.") + "\n")
    tr = found["training"]
    out.append("\n## Training loss per trainable parameter\n\n")
    out.append(_table(tr, ["run", "params", "steps", "first_loss", "final_loss"],
                      {"params": "{:,}", "first_loss": "{:.4f}", "final_loss": "{:.4f}"}))
    if "mps" in found and {mps, f"lora-r{found['mps']['config']['r']}"} <= set(tr.run):
        c, m = found["mps"]["config"], found["mps"]
        same_r = f"lora-r{c['r']}"
        t = tr.set_index("run")
        per = trainable_params(m["rows"], c["d1"], c["d2"], c["chi"], c["r"])
        out.append(f"\n{mps} trains {t.loc[mps, 'params']:,} parameters against {same_r}'s "
                   f"{t.loc[same_r, 'params']:,} ({t.loc[mps, 'params'] / t.loc[same_r, 'params']:.2f}×; per "
                   f"{m['rows']}×{m['cols']} module {m['rows'] * c['r']:,} + {c['r'] * c['d1'] * c['chi']:,} + {c['chi'] * c['d2']:,} "
                   f"= {per:,} vs {c['r'] * (m['rows'] + m['cols']):,}; the paper's 4096-wide setting, r = 256, χ = 32, 64·64: "
                   f"{trainable_params(4096, 64, 64, 32, 256):,} vs {256 * 8192:,}) and ends at a mean loss of "
                   f"{t.loc[mps, 'final_loss']:.4f} vs {t.loc[same_r, 'final_loss']:.4f} over the last five steps "
                   f"(single seed, noisy batches).\n")
    out.append(f"\n## Squeezed against trained at the same rank ({sqz} vs {direct})\n\n")
    sq = found["squeeze"]
    if sq is not None:
        s = sq[sq.checkpoint == sqz]
        out.append(f"LoRA-Squeeze of {src} (last step) to rank {int(s.k.max())}, exact SVD from the factors: kept energy "
                   f"{s.kept_energy.mean():.4f} on average (lowest {s.kept_energy.min():.4f}), relative Frobenius error "
                   f"{s.rel_fro_error.mean():.4f} (largest {s.rel_fro_error.max():.4f}; stored in float32 "
                   f"{s.stored_rel_fro_error.max():.4f}), {int(s.params_out.sum()):,} parameters from {int(s.params_in.sum()):,}.\n\n")
    out.append(_table(found["spectra"], ["run", "effective_rank", "stable_rank", "entropy_rank", "energy_rank_90", "energy_rank_99", "fro_norm"],
                      {k: "{:.2f}" for k in ("effective_rank", "stable_rank", "entropy_rank", "energy_rank_90", "energy_rank_99")} | {"fro_norm": "{:.4f}"}))
    held = found["held_out"]
    if held is not None:
        out.append("\nHeld-out loss (InfoNCE, τ = 0.05, batches of 16 docstring pairs the demo never trained on):\n\n")
        out.append(_table(held, ["run", "held_out_loss", "batches"], {"held_out_loss": "{:.4f}"}))
        h = held.set_index("run").held_out_loss
        if {sqz, direct, src} <= set(h.index):
            better = "below" if h[sqz] < h[direct] else "above"
            out.append(f"\nThe squeezed adapter's held-out loss is {h[sqz]:.4f}, {better} the directly trained "
                       f"{direct}'s {h[direct]:.4f} ({src} itself: {h[src]:.4f}; base {h['base']:.4f}). "
                       + ("LoRA-Squeeze's claim that compressing a higher-rank adapter matches or beats training at the "
                          "target rank holds here." if h[sqz] <= h[direct] else
                          "Here the paper's claim (squeezing matches or beats training at the target rank) does not hold.")
                       + f" One seed, {int(found['training'].steps.max())} steps: small differences may be run-to-run noise.\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="lab demo's workdir (default: the user cache dir, lab/demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for mps_and_squeeze.png and .md")
    parser.add_argument("--held-out", type=int, default=512, help="docstrings after the training set to measure the held-out loss on (0: skip)")
    args = parser.parse_args(argv)
    workdir = args.workdir or default_workdir()
    runs = load(workdir)
    found = measure(workdir, runs, args.held_out)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(found, args.out / "mps_and_squeeze.png")
    (args.out / "mps_and_squeeze.md").write_text(markdown(found, "mps_and_squeeze.png"))
    print(f"wrote {args.out / 'mps_and_squeeze.png'} and {args.out / 'mps_and_squeeze.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
