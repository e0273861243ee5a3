"""``lab.merge.merge``: the whole of ``lab merge`` as a function (the command and ``lab demo`` call it).

Several PEFT LoRA adapters of one base become one loadable adapter (``stack``, ``linear``, ``svd``,
``lego``, ``lego-oracle``); its per-module errors against the exact weighted sum go to
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
          windows: int = 16, overwrite: bool = False, eval_texts: Sequence[str | Path] | None = None) -> MergeResult:
    """Merge ``adapters`` with ``method`` into a PEFT adapter at ``out`` (weights default to 1/J each); kohya
    LoRA files merge into a kohya file ``out/<out.name>.safetensors``."""
    from lab.merge.adapters import merge_modules, merge_rows, read_adapter, write_adapter, write_merge_table
    from lab.probes.merging import MergeError

    inputs = [read_adapter(p) for p in adapters]
    if base is not None:
        from lab.checkpoints.hub import resolve

        base = resolve(base)[0]  # org/name[@revision] from the local Hugging Face cache; a local folder wins
    if any(a.config.get("format") == "kohya" for a in inputs) and (texts is not None or eval_texts or base is not None):
        raise MergeError("--base, --texts and --eval-texts run a language model on text; kohya image LoRAs are merged "
                         "without them")
    w = [1.0 / len(inputs)] * len(inputs) if weights is None else [float(x) for x in weights]
    names = [a.name for a in inputs]
    if len(set(names)) < len(names):  # the table names members by folder: make them unique
        for i, a in enumerate(inputs):
            a.name = f"{i}:{a.name}"
    merges = merge_modules(inputs, w, method, rank, seed=seed, reweight=reweight)
    if texts is not None and base is None or base is not None and texts is None and not eval_texts:
        raise MergeError("the hidden-state error needs both --base and --texts (or pass --eval-texts with --base)")
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
        rows = merge_rows(out.name, run, method, merges, dtype)
        return MergeResult(out, write_merge_table(Path(results), run, rows), rows, len(inputs))
    write_adapter(out, merges, inputs[0].config, dtype, overwrite=overwrite)
    rows = merge_rows(out.name, run, method, merges, dtype)
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
