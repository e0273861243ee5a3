"""The fine-tuning methods: each PEFT method's config built from a ``FinetuneConfig``, the trainable
parameters it really has, and the size that fits a parameter budget.

Every PEFT method goes through PEFT's own config class and ``get_peft_model``, so its checkpoints are
PEFT's own format. A budget is met by counting, never by formula: the model is built on the meta
device (no memory, no initialisation cost) with a candidate size, PEFT wraps it, and the parameters
that require gradients are counted. The search assumes only that the count does not decrease as the
size grows, and checks it.

What each method trains, per adapted ``Linear`` (out × in), and the size ``--budget`` picks:

* lora: B (out × r), A (r × in); ΔW = (α/r)·B·A. Size r.
* dora: LoRA's B, A and a magnitude vector (out). Size r.
* adalora: P (out × r), λ (r), Q (r × in), pruned by importance from init_r to target_r ranks on
  average. Size r = target_r (init_r = ⌈1.5·r⌉); the count is that of the final rank.
* loha: two LoRA pairs, ΔW = (B1·A1) ⊙ (B2·A2). Size r.
* lokr: ΔW = kron(W1, W2), W1 small and full, W2 of rank r (full from r ≥ its size/2). Size r, at
  PEFT's balanced Kronecker split or the most balanced ``decompose_factor`` that can use the budget.
* vera: two vectors (out, r) scaling frozen random B, A shared by all modules. Size r.
* ia3: one vector (out; in for feed-forward modules). No size: a fixed count.
* boft: butterfly products of orthogonal blocks and a scale (out). Size ``boft_block_size``.
* mps: B (out × r) and MPS cores C1 (r × d1 × χ), C2 (χ × d2) (lab/finetune/mps.py). Size r, χ fixed.
* full: the target weights themselves. No size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from lab.errors import InputError, MatchError

PEFT_METHODS = ("lora", "dora", "adalora", "loha", "lokr", "vera", "ia3", "boft")
# The option --budget sets, per method (None: the method has no size to pick)
SIZE_OPTION = {"lora": "r", "dora": "r", "adalora": "r", "loha": "r", "lokr": "r", "vera": "r", "mps": "r",
               "boft": "block_size", "ia3": None, "full": None}
# AdaLoRA starts at 1.5 times its final rank budget, as in the paper (Zhang et al., 2023, §4: b(0) = 1.5·b(T))
ADALORA_INIT_FACTOR = 1.5
DEFAULT_R = 8
DEFAULT_ALPHA = 16.0
DEFAULT_CHI = 8
DEFAULT_BLOCK_SIZE = 4  # PEFT's BOFTConfig default
VERA_MAX_R = 1 << 16  # VeRA's r can exceed the matrix dimensions (more scaling entries); a bound for the search


def adalora_init_r(target_r: int) -> int:
    return math.ceil(ADALORA_INIT_FACTOR * target_r) if target_r > 1 else 2


def peft_config(method: str, *, targets, r: int, alpha: float, rslora: bool = False, dropout: float = 0.0,
                steps: int = 1, seed: int = 0, block_size: int = DEFAULT_BLOCK_SIZE, lokr_factor: int = -1,
                feedforward: list[str] | None = None, exclude: list[str] | None = None):
    """PEFT's config object for ``method`` (one of :data:`PEFT_METHODS`) with the lab's options.

    ``targets`` is a list of module names or ``"all-linear"``; ``feedforward`` the IA3 modules whose
    input (not output) is scaled.
    """
    import peft

    common = dict(target_modules=targets, exclude_modules=exclude)
    if method in ("lora", "dora"):
        return peft.LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, lora_dropout=dropout, use_dora=method == "dora", **common)
    if method == "adalora":
        # total_step = the run's steps: ranks are pruned from init_r to target_r on PEFT's cubic
        # schedule (no warm-up phases) and the final mask is fixed at the last step.
        return peft.AdaLoraConfig(init_r=adalora_init_r(r), target_r=r, lora_alpha=alpha, lora_dropout=dropout,
                                  total_step=steps, tinit=0, tfinal=0, **common)
    if method == "loha":
        return peft.LoHaConfig(r=r, alpha=alpha, **common)
    if method == "lokr":
        return peft.LoKrConfig(r=r, alpha=alpha, decompose_factor=lokr_factor, **common)
    if method == "vera":
        # the shared random projections come from the run's seed and are saved with the adapter;
        # VeraConfig has no exclude_modules (method_config lists the modules instead)
        common.pop("exclude_modules")
        return peft.VeraConfig(r=r, vera_dropout=dropout, projection_prng_key=seed, save_projection=True, **common)
    if method == "ia3":
        return peft.IA3Config(feedforward_modules=feedforward or [], **common)
    if method == "boft":
        return peft.BOFTConfig(boft_block_size=block_size, boft_block_num=0, boft_dropout=dropout, **common)
    raise InputError(f"--method {method!r} is not a PEFT method ({', '.join(PEFT_METHODS)})")


def wrap(model, config, *, where: str = ""):
    """``get_peft_model(model, config)`` with quiet warnings, AdaLoRA's ``ranknum`` frozen, and a
    MatchError (one line) when the targets match nothing."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        # BOFT tries to build its CUDA kernel and says it cannot; AdaLoRA notes the unused r
        warnings.simplefilter("ignore")
        try:
            model = get_peft_model(model, config)
        except ValueError as e:
            names = config.target_modules if isinstance(config.target_modules, str) else ",".join(sorted(config.target_modules))
            raise MatchError(f"{where}: {config.peft_type.value.lower()} with --target-modules {names} cannot wrap this model ({str(e).splitlines()[0]})") from None
    for name, param in model.named_parameters():
        # AdaLoRA's ranknum divides the update and is always float(r); PEFT leaves it requiring a
        # gradient but never saves it, so an optimiser step on it would make the saved adapter
        # differ from the trained one.
        if ".ranknum." in name:
            param.requires_grad_(False)
    return model


def trainable_count(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class Pick:
    """What a budget picked: the size option and its value, the resulting trainable count, and the
    next size up with its count (None when there is none or the method has no size)."""

    method: str
    budget: int
    option: str | None
    size: int | None
    trainable: int
    next_size: int | None = None
    next_trainable: int | None = None
    fits: bool = True  # False: no size meets the budget (only reported for fixed-count methods)
    note: str = ""

    def line(self) -> str:
        """One line saying what was picked and why."""
        if self.option is None:
            return f"{self.method}: no size to pick; its fixed {self.trainable:,} trainable parameters fit --budget {self.budget:,}{self.note}"
        head = f"{self.method}: --budget {self.budget:,} picked {self.option} = {self.size} ({self.trainable:,} trainable parameters"
        if self.next_size is not None:
            return f"{head}; {self.option} = {self.next_size} would train {self.next_trainable:,}){self.note}"
        return f"{head}){self.note}"

    def record(self) -> dict:
        return {"budget": self.budget, "option": self.option, "size": self.size, "trainable": self.trainable,
                "next_size": self.next_size, "next_trainable": self.next_trainable, "note": self.note.strip("; ")}


def largest_fitting(count: Callable[[int], int], budget: int, sizes: list[int] | None = None, cap: int | None = None) -> tuple[int | None, int | None, int | None, int | None]:
    """The largest size whose ``count`` is ≤ ``budget``, its count, and the next size up with its count.

    ``sizes`` (ascending) lists the valid sizes, else every integer in 1 … ``cap``. Counts are
    assumed not to decrease with the size: doubling then bisection over the candidates, a
    handful of counts in all. Returns (None, count of the smallest, smallest, None) when even the
    smallest size exceeds the budget.
    """
    if sizes is None and cap is None:
        raise ValueError("largest_fitting needs sizes or a cap")
    n = len(sizes) if sizes is not None else cap
    at = (lambda i: sizes[i]) if sizes is not None else (lambda i: i + 1)
    cache: dict[int, int] = {}

    def c(i: int) -> int:
        if i not in cache:
            cache[i] = count(at(i))
        return cache[i]

    if c(0) > budget:
        return None, c(0), at(0), None
    lo, hi = 0, 1  # c(lo) ≤ budget; find hi with c(hi) > budget (or the end)
    while hi < n and c(hi) <= budget:
        lo, hi = hi, min(2 * hi, n)
    if hi >= n:
        hi = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if c(mid) <= budget:
            lo = mid
        else:
            hi = mid
    if hi < n:
        if c(hi) < c(lo):
            raise AssertionError(f"trainable count decreases with the size ({at(lo)}: {c(lo)}, {at(hi)}: {c(hi)})")
        return at(lo), c(lo), at(hi), c(hi)
    return at(lo), c(lo), None, None


# ---- applying a method to a model, and counting what it trains ------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The size options a run trains with, after defaults and a budget are applied."""

    r: int = DEFAULT_R
    block_size: int = DEFAULT_BLOCK_SIZE
    lokr_factor: int = -1


def _targets(config, base) -> list[str]:
    return list(config.target_modules or base.default_targets)


def _ia3_feedforward(targets: list[str], model_type: str) -> list[str]:
    """The targets IA3 treats as feed-forward (it scales their input): PEFT's own list for the
    architecture, restricted to the modules asked for (none for the default q, v)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD

    known = list(FEEDFORWARD.get(model_type, []))
    return known if targets == ["all"] else [t for t in targets if t in known]


def method_config(config, base, sizes: Sizes, model=None):
    """PEFT's config for a run (``config.method`` in :data:`PEFT_METHODS`) at ``sizes`` (``model``:
    the model it will wrap, needed only for VeRA on every linear module)."""
    from lab.finetune.models import CONTRASTIVE

    targets = _targets(config, base)
    alpha = config.alpha if config.alpha is not None else DEFAULT_ALPHA
    names = "all-linear" if targets == ["all"] else targets
    if targets == ["all"] and config.method == "vera" and model is not None:
        # VeRA cannot exclude modules: name every linear module but the encoder's pooler (and a head)
        names = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n
                       and not n.endswith(("pooler.dense", "lm_head")))
    return peft_config(
        config.method, targets=names, r=sizes.r, alpha=alpha,
        rslora=config.rslora, dropout=config.dropout, steps=config.steps, seed=config.seed,
        block_size=sizes.block_size, lokr_factor=sizes.lokr_factor, feedforward=_ia3_feedforward(targets, base.model_type),
        # all-linear leaves out a causal LM's output head; an encoder has none, and its pooler is
        # not part of the sentence embedding.
        exclude=["pooler.dense"] if base.objective == CONTRASTIVE and targets == ["all"] else None,
    )


def adapted_modules(model) -> list[str]:
    """The names (as in the base model) of the modules a PEFT method or MPS wrapped."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from lab.finetune.mps import MPSLinear

    return sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules()
                  if n and isinstance(m, (BaseTunerLayer, MPSLinear)))


def adapt(model, config, base, sizes: Sizes, *, adalora_final: bool = False):
    """``model`` wrapped by ``config.method`` (a PEFT method or mps) at ``sizes``, only the adapter
    trainable. ``adalora_final`` builds AdaLoRA at its final rank (init_r = target_r), to count
    what its saved adapter holds."""
    where = str(base.path)
    if config.method == "mps":
        from lab.finetune.mps import wrap_mps

        chi = config.chi if config.chi is not None else DEFAULT_CHI
        alpha = config.alpha if config.alpha is not None else DEFAULT_ALPHA
        wrap_mps(model, _targets(config, base), sizes.r, chi, alpha, config.d1, where=where)
        return model
    peft_cfg = method_config(config, base, sizes, model)
    if adalora_final:
        peft_cfg.init_r = sizes.r
    return wrap(model, peft_cfg, where=where)


def meta_model(base):
    """The base model's architecture on the meta device: shapes without memory, for counting."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from lab.finetune.models import CAUSAL_LM

    cfg = AutoConfig.from_pretrained(base.path, local_files_only=True)
    cls = AutoModelForCausalLM if base.objective == CAUSAL_LM else AutoModel
    with torch.device("meta"):
        return cls.from_config(cfg)


def count_trainable(config, base, sizes: Sizes, *, adalora_final: bool = True) -> int:
    """The trainable parameters ``config.method`` has at ``sizes`` on ``base``, counted on a meta
    build of the real model (AdaLoRA: at its final rank, what its saved adapter holds)."""
    # only the base is built on the meta device: PEFT makes the (small) adapter tensors on the CPU
    # and moves them to the base's device, where some tuners (BOFT's permutations) need real values
    model = adapt(meta_model(base), config, base, sizes, adalora_final=adalora_final)
    return trainable_count(model)


def _target_shapes(config, base, sizes: Sizes) -> list[tuple[int, int]]:
    """(out, in) of every module the method wraps."""
    model = adapt(meta_model(base), config, base, sizes)
    shapes = []
    for name in adapted_modules(model):
        module = model.get_submodule(name) if config.method == "mps" else model.base_model.model.get_submodule(name)
        layer = module.base_layer if config.method == "mps" else module.get_base_layer()
        shapes.append((layer.out_features, layer.in_features))
    return shapes


def _lokr_full_r(shapes, factor: int) -> int:
    """The smallest r at which every module's LoKr W2 is a full matrix (PEFT's rule: r ≥ max(W2's
    dimensions)/2), so larger r adds nothing."""
    from peft.tuners.lokr.layer import factorization

    return max(math.ceil(max(factorization(o, factor)[1], factorization(i, factor)[1]) / 2) for o, i in shapes)


def pick_sizes(config, base) -> tuple[Sizes, Pick | None]:
    """The sizes a run trains with: the options given, or with ``config.budget`` the largest size whose
    real trainable count fits (see :class:`Pick`). InputError when no size fits."""
    given = Sizes(r=config.r if config.r is not None else DEFAULT_R,
                  block_size=config.block_size if config.block_size is not None else DEFAULT_BLOCK_SIZE,
                  lokr_factor=config.lokr_factor if config.lokr_factor is not None else -1)
    if config.budget is None:
        return given, None
    budget, method = config.budget, config.method
    option = SIZE_OPTION[method]
    if option is None:  # ia3: a fixed count
        n = count_trainable(config, base, given)
        if n > budget:
            raise InputError(f"--budget {budget:,}: {method} has no size to shrink and trains {n:,} parameters on these target modules; raise --budget or target fewer modules")
        return given, Pick(method, budget, None, None, n)
    # (BOFT's block size 1 divides every input dimension, so the probe builds whatever the default)
    shapes = _target_shapes(config, base, Sizes(r=given.r, block_size=1, lokr_factor=given.lokr_factor))
    note = ""
    if method == "boft":
        sizes = [b for b in range(1, min(i for _, i in shapes) + 1) if all(i % b == 0 for _, i in shapes)]
        size, n, nxt, n_next = largest_fitting(lambda b: count_trainable(config, base, Sizes(block_size=b)), budget, sizes=sizes)
        picked = Sizes(block_size=size) if size is not None else None
    else:
        factor = given.lokr_factor
        if method == "lokr" and config.lokr_factor is None:
            factor = _lokr_factor_for(config, base, shapes, budget)
            if factor != -1:
                note = f"; decompose_factor = {factor}: PEFT's balanced Kronecker split cannot use the budget"
        if method == "lokr":
            cap = _lokr_full_r(shapes, factor)
        elif method == "vera":
            cap = VERA_MAX_R
        else:
            cap = max(min(o, i) for o, i in shapes)
        size, n, nxt, n_next = largest_fitting(lambda r: count_trainable(config, base, Sizes(r=r, lokr_factor=factor)), budget, cap=cap)
        picked = Sizes(r=size, lokr_factor=factor) if size is not None else None
        if size is not None and nxt is None:
            note += {"lokr": f"; the most r can use at this Kronecker split (W2 full from r = {cap})",
                     "vera": f"; the search stops at r = {cap}"}.get(method, f"; r is capped at the largest min(out, in) = {cap}")
    if picked is None:
        raise InputError(f"--budget {budget:,}: the smallest {method} ({option} = {nxt}) trains {n:,} parameters on these target modules; raise --budget or target fewer modules")
    if method == "adalora":
        start = count_trainable(config, base, picked, adalora_final=False)
        note += f"; AdaLoRA starts at init_r = {adalora_init_r(size)} ({start:,}) and prunes to this on average"
    return picked, Pick(method, budget, option, size, n, nxt, n_next, note=note)


def _lokr_factor_for(config, base, shapes, budget: int) -> int:
    """PEFT's balanced split (-1) when the budget is within what r can use there, else the largest
    decompose_factor (closest to balanced) whose full W2 exceeds the budget; 1 when none does."""
    def most(factor: int) -> int:
        return count_trainable(config, base, Sizes(r=_lokr_full_r(shapes, factor), lokr_factor=factor))

    if most(-1) > budget:
        return -1
    from peft.tuners.lokr.layer import factorization

    dims = [d for shape in shapes for d in shape]
    balanced = max(factorization(d, -1)[0] for d in dims)
    factors = [f for f in range(balanced - 1, 0, -1) if all(d % f == 0 for d in dims)]
    for f in factors:
        if most(f) > budget:
            return f
    return 1
