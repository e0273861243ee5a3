"""The thresholds probe on attention that is not LLaMA's: q/k norms (Qwen3 and Gemma 3 per head, OLMo 2 over the
whole projection), Gemma's query_pre_attn_scalar in place of √d_head, Gemma 2's logit soft-capping and sliding
windows. The reference is each model's own eager attention function, wrapped: the query and key it receives (after
the model's norms and rotary embedding), its scaling and soft-cap, and the mask transformers built for it — so
logit_max and the post-rotary gammas are read from what the softmax actually sees, not from the probe's hooks."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from lab.probes.thresholds import measure
from lab.probes.windows import Window

SIZES = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)


def _qwen3():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(**SIZES, head_dim=8))


def _gemma2():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # a window shorter than the sequences, logits capped low enough that the cap bends them
    return Gemma2ForCausalLM(Gemma2Config(**SIZES, head_dim=8, query_pre_attn_scalar=24, sliding_window=5,
                                          attn_logit_softcapping=1.5, final_logit_softcapping=None))


def _gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM(Gemma3TextConfig(**SIZES, head_dim=8, query_pre_attn_scalar=24, sliding_window=5,
                                              layer_types=["sliding_attention", "full_attention"]))


def _olmo2():
    from transformers import Olmo2Config, Olmo2ForCausalLM

    return Olmo2ForCausalLM(Olmo2Config(**SIZES, pad_token_id=0, bos_token_id=1, eos_token_id=2))


def _perturbed(make, seed):
    """The model with every norm's weight and every projection moved off its initial value, so that norm weights
    (ones or zeros at init) and the scale matter."""
    torch.manual_seed(seed)
    model = make()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if "norm" in name else 0.2))
    model.config._attn_implementation = "eager"
    return model.eval()


def _reference(model, windows):
    """Per (seq_len, window, layer, head): the logits' largest |·| over attended pairs and √scaling·max|q|, |k| after
    the rotary embedding, from the tensors the model's own eager attention function receives."""
    modeling = sys.modules[type(model).__module__]
    original = modeling.eager_attention_forward
    seen = []

    def wrapped(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
        scale = module.head_dim ** -0.5 if scaling is None else scaling
        q, k = query[0].double(), key[0].double()  # (heads, L, d), (kv heads, L, d)
        k_rep = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        logits = q @ k_rep.transpose(1, 2) * scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        allowed = attention_mask[0, 0] == 0 if attention_mask is not None else torch.ones_like(logits[0], dtype=bool)
        seen.append({"logit_max": logits.abs().masked_fill(~allowed, -1).amax(dim=(1, 2)).numpy(),
                     "gamma_q_rope": q.abs().amax(dim=(1, 2)).numpy() * math.sqrt(scale),
                     "gamma_k_rope": k_rep.abs().amax(dim=(1, 2)).numpy() * math.sqrt(scale),
                     "window_lengths": allowed.sum(dim=1).numpy()})
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, softcap=softcap, **kwargs)

    modeling.eager_attention_forward = wrapped
    try:
        out = {}
        with torch.no_grad():
            for w in windows:
                seen.clear()
                model(input_ids=torch.tensor([w.ids]))
                for layer, found in enumerate(seen):
                    for h in range(len(found["logit_max"])):
                        out[(w.seq_len, w.index, layer, h)] = {k: (v[h] if k != "window_lengths" else v)
                                                                for k, v in found.items()}
        return out
    finally:
        modeling.eager_attention_forward = original


@pytest.mark.parametrize("make", [_qwen3, _gemma2, _gemma3, _olmo2], ids=["qwen3", "gemma2", "gemma3", "olmo2"])
def test_logits_and_rotary_gammas_are_what_the_models_softmax_sees(make):
    model = _perturbed(make, seed=4)
    rng = np.random.default_rng(0)
    windows = [Window(L, i, i * L, tuple(int(t) for t in rng.integers(3, 64, L))) for L in (7, 12) for i in range(2)]
    rows = measure(model, windows)
    want = _reference(model, windows)
    assert len(rows) == len(want) == 2 * 2 * 2 * 4
    attn = model.model.layers[0].self_attn
    scaling = float(attn.scaling)
    for r in rows:
        exp = want[(r["seq_len"], r["window"], r["layer"], r["head"])]
        for col in ("logit_max", "gamma_q_rope", "gamma_k_rope"):
            assert r[col] == pytest.approx(float(exp[col]), rel=1e-5), (make.__name__, col)
        # the two conventions differ by √d_head on each side, whatever the model's own scale
        assert r["gamma_q_as"] == pytest.approx(r["gamma_q"] * math.sqrt(r["d_head"]), rel=1e-12)
    if make is _gemma2:  # the cap binds and the window is shorter than the longer sequences: both were exercised
        assert max(r["logit_max"] for r in rows) < 1.5 and scaling == pytest.approx(24 ** -0.5)
        # layer 0 slides (a query attends to at most 5 keys), layer 1 attends to the whole causal past
        assert {layer: max(max(e["window_lengths"]) for key, e in want.items() if key[0] == 12 and key[2] == layer)
                for layer in (0, 1)} == {0: 5, 1: 12}


def test_qwen3_gamma_q_is_the_per_head_normed_query_in_numpy():
    """gamma_q of a q-normed model = √scaling·max |RMSNorm_head(X·W_Qᵀ)|, with X the layer's normed input and the
    norm written here in numpy from the weights (Qwen3: per head, over head_dim, eps from the config)."""
    model = _perturbed(_qwen3, seed=5)
    rng = np.random.default_rng(1)
    windows = [Window(9, 0, 0, tuple(int(t) for t in rng.integers(3, 64, 9)))]
    rows = measure(model, windows)
    cfg = model.config
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([windows[0].ids]), output_hidden_states=True).hidden_states
    for layer, block in enumerate(model.model.layers):
        h = hidden[layer][0].double().numpy()
        g = block.input_layernorm.weight.detach().double().numpy()
        X = h / np.sqrt((h * h).mean(-1, keepdims=True) + cfg.rms_norm_eps) * g
        q = (X @ block.self_attn.q_proj.weight.detach().double().numpy().T).reshape(9, 4, 8)
        qn = q / np.sqrt((q * q).mean(-1, keepdims=True) + cfg.rms_norm_eps) * block.self_attn.q_norm.weight.detach().double().numpy()
        for r in (r for r in rows if r["layer"] == layer):
            assert r["gamma_q"] == pytest.approx(np.abs(qn[:, r["head"]]).max() * 8 ** -0.25, rel=1e-5)
