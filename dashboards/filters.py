"""The sidebar filters shared by every page (run, method, checkpoint, step, role, layer) and the
selection they make, turned into pyarrow filters so pages read only the rows they show.

The method filter (shown when the runs hold more than one: lora, full, dora, loha, ...) narrows the
runs and checkpoints to those whose updates are of the chosen kinds, so every page, whatever its
table, shows only those methods."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import data
from lab.present.frames import distinct
from lab.store import Run

KEY = "lab_selection"


@dataclass
class Selection:
    """What the reader chose. ``None`` means "everything" (no filter, so rows with an empty step or
    layer, such as embeddings or single checkpoints, are kept)."""

    results: Path
    runs: list[Run]
    checkpoints: list[str] | None
    steps: list[int] | None
    roles: list[str] | None
    layers: tuple[int, int] | None
    index: pd.DataFrame  # the deltas index rows inside the selection

    def filters(self, *, checkpoint: bool = True, role: bool = True, step: bool = True,
                layer: bool = True) -> list[tuple]:
        """pyarrow (column, op, value) filters for the selection (all must hold); a False flag leaves that
        column's filter out (for rows that join two checkpoints or describe a whole model)."""
        out: list[tuple] = []
        if checkpoint and self.checkpoints is not None:
            out.append(("checkpoint", "in", list(self.checkpoints)))
        if step and self.steps is not None:
            out.append(("step", "in", list(self.steps)))
        if role and self.roles is not None:
            out.append(("role", "in", list(self.roles)))
        if layer and self.layers is not None:
            out += [("layer", ">=", int(self.layers[0])), ("layer", "<=", int(self.layers[1]))]
        return out

    @property
    def run_names(self) -> list[str]:
        return [r.name for r in self.runs]


def _narrowed(chosen: list, options: list) -> list | None:
    """The chosen values, or None when all are chosen (no filter needed)."""
    return None if set(chosen) >= set(options) else list(chosen)


def sidebar(results: Path) -> Selection:
    """Draw the filters in the sidebar and return (and remember) the selection."""
    all_runs = data.runs(results) if results.is_dir() else []
    st.sidebar.caption(f"results: `{results}`")
    names = [r.name for r in all_runs]
    chosen = st.sidebar.multiselect("Runs", names, default=names, help="Runs to show; pages overlay or compare them.")
    runs = [r for r in all_runs if r.name in chosen]
    index = data.index(runs) if runs else pd.DataFrame(columns=data.INDEX_COLUMNS)
    index = index[index["checkpoint"] != "controls"]
    every_checkpoint = distinct(index, "checkpoint")  # a method filter narrows them even when all that remain are chosen
    method_options = distinct(index, "kind")
    if len(method_options) > 1:
        methods = st.sidebar.multiselect("Methods", method_options, default=method_options,
                                         help="Fine-tuning methods (the deltas table's kind): lora, full, dora, loha, ...")
        if set(methods) != set(method_options):  # all chosen: no filter (runs without updates, merges, stay)
            index = index[index["kind"].isin(methods)]
            runs = [r for r in runs if r.name in set(index["run"])]

    ckpt_options = distinct(index, "checkpoint")
    ckpts = st.sidebar.multiselect("Checkpoints", ckpt_options, default=ckpt_options,
                                   help="Checkpoint folders or files (checkpoint-N of a training output).")
    steps_options = [int(s) for s in distinct(index, "step")]
    steps = None
    if steps_options:
        steps = _narrowed(st.sidebar.multiselect("Steps", steps_options, default=steps_options,
                                                 help="Training steps N of checkpoint-N folders."), steps_options)
    role_options = distinct(index, "role")
    roles = st.sidebar.multiselect("Roles", role_options, default=role_options,
                                   help="Module roles: q, k, v, o, up, down, gate, ... (other = not recognised).")
    layer_options = [int(x) for x in distinct(index, "layer")]
    layers = None
    if len(layer_options) > 1:
        lo, hi = st.sidebar.slider("Layers", min_value=layer_options[0], max_value=layer_options[-1],
                                   value=(layer_options[0], layer_options[-1]), help="Transformer block indices.")
        layers = None if (lo, hi) == (layer_options[0], layer_options[-1]) else (lo, hi)

    selection = Selection(results, runs, _narrowed(ckpts, every_checkpoint), steps, _narrowed(roles, role_options),
                          layers, index)
    selection.index = _apply(index, selection)
    st.session_state[KEY] = selection
    return selection


def _apply(index: pd.DataFrame, s: Selection) -> pd.DataFrame:
    keep = pd.Series(True, index=index.index)
    if s.checkpoints is not None:
        keep &= index["checkpoint"].isin(s.checkpoints)
    if s.steps is not None:
        keep &= index["step"].isin(s.steps)
    if s.roles is not None:
        keep &= index["role"].isin(s.roles)
    if s.layers is not None:
        keep &= index["layer"].between(*s.layers)
    return index[keep]


def current() -> Selection:
    """The selection the sidebar made in this script run."""
    return st.session_state[KEY]
