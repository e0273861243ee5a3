"""``lab.merge.merge``: the whole of ``lab merge`` as a function (the command and ``lab demo`` call it).

Several PEFT LoRA adapters of one base become one loadable adapter (``stack``, ``linear``, ``svd``,
``lego``, ``lego-oracle``, and the task-vector methods ``task_arithmetic``, ``ties``, ``dare_linear``,
``dare_ties``, ``magnitude_prune`` on each module's dense update, cut to rank k by the exact SVD);
full fine-tunes of ``base`` merge as task vectors into a model folder (:mod:`lab.merge.full`). Its per-module errors against the exact weighted sum go to
RESULTS/RUN/merge.parquet, with ``base`` and ``texts`` also the merged model's hidden-state error,
and with ``base`` and ``eval_texts`` the held-out loss of the merged adapter, of every input and
of the base on each text set to RESULTS/RUN/merge_eval.parquet (:mod:`lab.merge.evaluate`).
Every input is read and checked, and every corpus windowed, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence


@dataclass
class MergeResult:
    """What one merge wrote: the adapter folder, the merge table's path and its rows."""

    out: Path
    table: Path
    rows: list[dict]
    adapters: int
    eval_table: Path | None = None
    eval_rows: list[dict] | None = None


def merge(adapters: Sequence[str | Path], out: str | Path, method: str = "stack", weights: Sequence[float] | None = None,
          rank: int | None = None, seed: int = 0, reweight: bool = True, results: str | Path = "results",
          run: str = "merges", base: str | Path | None = None, texts: str | Path | None = None, seq_len: int = 64,
          windows: int = 16, overwrite: bool = False, eval_texts: Sequence[str | Path] | None = None,
          density: float | None = None) -> MergeResult:
    """Merge ``adapters`` with ``method`` into a PEFT adapter at ``out`` (weights default to 1/J each); kohya
    LoRA files merge into a kohya file ``out/<out.name>.safetensors``; full fine-tunes (with ``base``)
    into a model folder. ``density``: the fraction kept by ties, dare_* and magnitude_prune; ``seed``:
    DARE's masks (and LEGO's k-means)."""
    from lab.merge.adapters import merge_modules, merge_rows, read_adapter, write_adapter, write_merge_table
    from lab.merge.full import is_full_model
    from lab.kernels.merging import MergeError

    if base is not None:
        from lab.checkpoints.hub import resolve

        base = resolve(base)[0]  # org/name[@revision] from the local Hugging Face cache; a local folder wins
    if adapters and all(is_full_model(p) for p in adapters):
        if rank is not None:
            raise MergeError(f"--rank {rank}: full fine-tunes merge dense, tensor by tensor; --rank applies to adapters")
        return _merge_full(adapters, out, method, weights, base, texts, seq_len, windows, overwrite, eval_texts,
                           density, seed, results, run)
    inputs = [read_adapter(p) for p in adapters]
    if any(a.config.get("format") == "kohya" for a in inputs) and (texts is not None or eval_texts or base is not None):
        raise MergeError("--base, --texts and --eval-texts run a language model on text; kohya image LoRAs are merged "
                         "without them")
    w = [1.0 / len(inputs)] * len(inputs) if weights is None else [float(x) for x in weights]
    names = [a.name for a in inputs]
    if len(set(names)) < len(names):  # the table names members by folder: make them unique
        for i, a in enumerate(inputs):
            a.name = f"{i}:{a.name}"
    order = None
    if method.startswith("dare"):
        from lab.merge.order import model_order

        order = model_order(base, inputs[0].config)  # DARE draws its masks module by module in the model's order
    merges = merge_modules(inputs, w, method, rank, seed=seed, reweight=reweight, density=density, order=order)
    if texts is not None and base is None:
        raise MergeError("the hidden-state error (--texts) needs --base, the model the adapters were trained on")
    token_windows = None
    if base is not None and texts is not None:
        from lab.merge.hidden import windows_for

        token_windows = windows_for(Path(base), Path(texts), seq_len, windows)  # a short corpus fails before anything is written
    sets = None
    if eval_texts:
        if base is None:
            raise MergeError("--eval-texts needs --base (the model the adapters were trained on)")
        from lab.merge.evaluate import eval_sets

        sets = eval_sets(Path(base), eval_texts, seq_len, windows)
    out = Path(out)
    dtype = inputs[0].dtype
    if inputs[0].config.get("format") == "kohya":  # kohya in, kohya out
        from lab.merge.adapters import write_kohya

        write_kohya(out, merges, inputs[0].config, dtype, method, overwrite=overwrite)
        rows = merge_rows(out.name, run, method, merges, dtype, density, _seed(method, seed))
        return MergeResult(out, write_merge_table(Path(results), run, rows), rows, len(inputs))
    write_adapter(out, merges, inputs[0].config, dtype, overwrite=overwrite)
    rows = merge_rows(out.name, run, method, merges, dtype, density, _seed(method, seed))
    if token_windows is not None:
        from lab.merge.hidden import hidden_errors

        exact = [replace(m, merged=m.target) for m in merges]
        error = hidden_errors(Path(base), [out], exact, inputs[0].config, dtype, token_windows)[0]
        for row in rows:
            row["hidden_rel_error"] = error  # one number per merged model, on each of its rows
    result = MergeResult(out, write_merge_table(Path(results), run, rows), rows, len(inputs))
    if sets is not None:
        from lab.merge.evaluate import eval_rows, write_eval_table

        result.eval_rows = eval_rows(run, out.name, method, Path(base), [(a.name, a.path) for a in inputs], sets, out)
        result.eval_table = write_eval_table(Path(results), run, result.eval_rows)
    return result


def _seed(method: str, seed: int) -> int | None:
    """The seed as the merge table records it: for the methods that use one."""
    return int(seed) if method.startswith(("dare", "lego")) else None


def _merge_full(models, out, method, weights, base, texts, seq_len, windows, overwrite, eval_texts, density, seed,
                results, run) -> MergeResult:
    """Full fine-tunes of ``base`` merged as task vectors into a model folder, with the merge table (and merge_eval)."""
    from lab.merge.adapters import write_merge_table
    from lab.merge.full import full_rows, merge_full
    from lab.kernels.merging import MergeError

    if base is None:
        raise MergeError(f"{models[0]} is a full model: merging full fine-tunes needs --base, the model they were fine-tuned from")
    if texts is not None:
        raise MergeError("--texts (the hidden-state error against the exact sum) applies to adapter merges; use --eval-texts")
    paths = [Path(p) for p in models]
    w = [1.0 / len(paths)] * len(paths) if weights is None else [float(x) for x in weights]
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    sets = None
    if eval_texts:
        from lab.merge.evaluate import eval_sets

        sets = eval_sets(Path(base), eval_texts, seq_len, windows)  # a short corpus fails before anything is written
    out = Path(out)
    merged, model_type = merge_full(paths, Path(base), out, method, w, density, seed, overwrite=overwrite)
    rows = full_rows(out.name, run, method, merged, model_type, names, w, density, _seed(method, seed))
    result = MergeResult(out, write_merge_table(Path(results), run, rows), rows, len(paths))
    if sets is not None:
        from lab.merge.evaluate import eval_rows, write_eval_table

        result.eval_rows = eval_rows(run, out.name, method, Path(base), list(zip(names, paths)), sets, out, full=True)
        result.eval_table = write_eval_table(Path(results), run, result.eval_rows)
    return result
