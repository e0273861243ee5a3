"""Running a model over token windows with forward hooks: the one loop the activation probes share.

The attention, thresholds and no-hair probes each read something from inside the model as it runs
on the run's windows (the attention probabilities, the projections' outputs); they differ only in
the hooks. :func:`run_windows` runs the model once per window, without gradients, with the hooks a
probe installs and removes them afterwards whatever happens; :func:`attention_probabilities` reads
an eager attention module's probabilities from its output; :func:`effective_weight` is a projection's
weight as the model runs it (adapters merged in), used by the probes that compare weights with what
the attention does.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from lab.errors import InputError
from lab.probes.windows import Window, attention_layers


def run_windows(model, windows: list[Window], install: Callable[[list[Window]], list[Any]],
                on_window: Callable[[int, Window], None] | None = None) -> None:
    """Run ``model`` on each window (one batch of one window, no gradients).

    ``install(current)`` registers the probe's forward hooks and returns their handles; while the model
    runs on a window, ``current[0]`` is that window (the hooks read it). ``on_window(i, window)`` is called
    after each forward pass. The hooks are removed when the loop ends, also on an error.
    """
    import torch

    current: list[Window] = []
    handles = install(current)
    try:
        with torch.no_grad():
            for i, w in enumerate(windows):
                current[:] = [w]
                model(input_ids=torch.tensor([w.ids], dtype=torch.long))
                if on_window is not None:
                    on_window(i, w)
    finally:
        for h in handles:
            h.remove()


def forward_steps(ctx, what: str, windows: list[Window]) -> Callable[[int, Window], None]:
    """An ``on_window`` that reports each forward pass to ``ctx.tick`` (the progress bar's second line)."""
    return lambda i, w: ctx.tick(f"{what}: forward pass {i + 1}/{len(windows)} (L = {w.seq_len})")


def attention_probabilities(module, output):
    """The (1, heads, L, L) attention probabilities an attention module returned (a torch tensor), or an
    InputError naming the module when it returned none (the model must run with eager attention)."""
    weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if weights is None:
        raise InputError(f"{type(module).__name__} returned no attention probabilities; the model must run "
                         "with eager attention")
    return weights


def effective_weight(linear) -> tuple[np.ndarray, np.ndarray]:
    """(W_eff, bias) of a projection as the model runs it: rows of module(I) − module(0), float64.

    Exact for anything linear in its input: a plain Linear, PEFT's LoRA (W + s·B·A) and DoRA
    (magnitude-rescaled) layers in eval mode, lab's MPS Adaptation layers (W + s·B·A_MPS).
    """
    import torch

    inner = getattr(linear, "base_layer", linear)  # PEFT's and lab's MPS wrappers keep the Linear as base_layer
    d_in = int(getattr(linear, "in_features", None) or getattr(inner, "in_features", None) or inner.weight.shape[1])
    with torch.no_grad():
        zero = linear(torch.zeros(1, d_in)).to(torch.float64)
        out = linear(torch.eye(d_in)).to(torch.float64) - zero
    return out.T.numpy(), zero[0].numpy()


def qv_weights(model) -> dict[int, dict[str, np.ndarray]]:
    """The effective W_q and W_v of every attention layer, float64 (out, in)."""
    return {a.layer: {"q": effective_weight(a.q)[0], "v": effective_weight(a.v)[0]} for a in attention_layers(model)}
