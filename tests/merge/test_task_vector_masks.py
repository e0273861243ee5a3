"""DARE's keep-masks (lab.kernels.task_vectors.keep_masks, dare_masks) against torch.bernoulli itself,
the draws PEFT's ``random_pruning`` makes: bit for bit, and the torch generator left where torch's
own draws leave it; and the rule they rest on ((y & 0xFFFFFF) < ⌈p·2²⁴⌉ over the MT19937 outputs y)
against an MT19937 written here from Matsumoto and Nishimura's reference code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.kernels import task_vectors as tvm

SHAPES = [(7, 13), (1, 1), (624, 1), (25, 25), (3, 208), (1, 623), (2, 625), (384, 1536), (11, 1)]
DENSITIES = [0.1, 0.5, 0.9, 1 / 3, 0.25, 0.375, 12345 / 2 ** 24, 1 - 2 ** -24, 0.7, 1.0]


def _torch_masks(shapes, d, g):
    return [torch.bernoulli(torch.full(s, d, dtype=torch.float32), generator=g).numpy() for s in shapes]


def _assert_same_draws(mine, theirs, g_mine, g_theirs):
    for a, b in zip(mine, theirs, strict=True):
        assert a.dtype == bool and a.shape == b.shape
        np.testing.assert_array_equal(a, b.astype(bool))
    assert torch.equal(g_mine.get_state(), g_theirs.get_state())
    # and the stream goes on the same way: torch's own draws after the masks
    assert torch.equal(torch.rand(1000, generator=g_mine), torch.rand(1000, generator=g_theirs))


@pytest.mark.parametrize("seed", [0, 5, 2 ** 32 + 3, 67280421310721])
@pytest.mark.parametrize("d", DENSITIES)
def test_keep_masks_are_torch_bernoulli_bit_for_bit_one_after_another(seed, d):
    """Several masks from one generator: each continues the stream where the one before stopped."""
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    _assert_same_draws(tvm.keep_masks(SHAPES, d, g1), _torch_masks(SHAPES, d, g2), g1, g2)


@pytest.mark.parametrize("used", [0, 1, 623, 624, 625, 1247, 1248, 5000])
def test_keep_masks_continue_a_generator_torch_has_used(used):
    """A generator torch has already drawn from (at every place in its 624-word block, and with a
    cached normal sample): the masks start where torch's next draw would, and the cache survives."""
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for g in (g1, g2):
        torch.randint(0, 10, (used,), generator=g)
        torch.normal(0.0, 1.0, (1,), generator=g, dtype=torch.float64)  # leaves the second Box–Muller sample cached
    _assert_same_draws(tvm.keep_masks([(31, 17), (640,)], 0.3, g1), _torch_masks([(31, 17), (640,)], 0.3, g2), g1, g2)
    assert torch.equal(torch.normal(0.0, 1.0, (3,), generator=g1, dtype=torch.float64),
                       torch.normal(0.0, 1.0, (3,), generator=g2, dtype=torch.float64))


@pytest.mark.parametrize("rows", [1, 5, 100])
def test_packed_row_block_masks_are_one_torch_call(rows):
    """dare_masks draws a streamed update's mask a row block at a time: the bits of one torch call."""
    tv = tvm.TaskVector(np.zeros((37, 29)))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    packed = tvm.dare_masks(tv, 0.6, g1, rows=rows)
    want = _torch_masks([(37, 29)], 0.6, g2)[0].astype(bool)
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1, count=29).astype(bool), want)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_an_unknown_generator_state_layout_falls_back_to_torch(monkeypatch):
    """Were torch's state layout to change (here: a different expected size), torch draws the masks."""
    monkeypatch.setattr(tvm, "_TORCH_STATE_BYTES", 1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    _assert_same_draws(tvm.keep_masks([(20, 30)], 0.5, g1), _torch_masks([(20, 30)], 0.5, g2), g1, g2)
    out = [np.ones((4, 5), dtype=bool), np.ones((6, 7), dtype=bool)]
    got = tvm.keep_masks([(4, 5), (6, 7)], 0.5, g1, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    _assert_same_draws(got, _torch_masks([(4, 5), (6, 7)], 0.5, g2), g1, g2)


def test_masks_written_into_given_arrays():
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    out = [np.ones((9, 70), dtype=bool), np.zeros((700,), dtype=bool)]
    got = tvm.keep_masks([(9, 70), (700,)], 0.2, g1, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    _assert_same_draws(got, _torch_masks([(9, 70), (700,)], 0.2, g2), g1, g2)


class _ReferenceMT19937:
    """MT19937 as in mt19937ar.c (init_genrand, genrand_int32), in plain Python integers."""

    def __init__(self, seed: int):
        self.mt = [seed & 0xFFFFFFFF]
        for i in range(1, 624):
            self.mt.append((1812433253 * (self.mt[-1] ^ (self.mt[-1] >> 30)) + i) & 0xFFFFFFFF)
        self.i = 624

    def __call__(self) -> int:
        if self.i >= 624:
            for k in range(624):
                y = (self.mt[k] & 0x80000000) | (self.mt[(k + 1) % 624] & 0x7FFFFFFF)
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)


@pytest.mark.parametrize("seed", [0, 42, 2 ** 33 + 1])
@pytest.mark.parametrize("d", [0.5, 1 / 3, 0.9])
def test_the_rule_over_the_reference_mt19937_is_torch_bernoulli(seed, d):
    """torch.manual_seed(s) is init_genrand(s mod 2³²) and torch.bernoulli keeps an entry iff its output's
    low 24 bits, over 2²⁴, fall below float32(p): checked against the reference generator."""
    ref = _ReferenceMT19937(seed)
    n = 1500  # past two regenerations of the state
    p = float(np.float32(d))
    want = np.array([(ref() & 0xFFFFFF) * 2.0 ** -24 < p for _ in range(n)])
    got = torch.bernoulli(torch.full((n,), d), generator=torch.Generator().manual_seed(seed)).numpy().astype(bool)
    np.testing.assert_array_equal(got, want)
    t = tvm.keep_threshold(d)  # the least low-24-bit value not kept
    assert (t - 1) * 2.0 ** -24 < p and not t * 2.0 ** -24 < p


def test_masks_interleaved_with_torch_draws_and_other_generators():
    """Mask draws reuse numpy's generator only while the torch generator is where they left it: torch's
    own draws in between, and another generator drawn from in between, still give torch's masks."""
    a1, a2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    b1, b2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    steps = [("a", (30, 40)), ("a", (7, 9)), ("torch", None), ("a", (700, 3)), ("b", (50, 50)), ("a", (5, 5)),
             ("b", (1, 1)), ("b", (13, 1000))]
    for who, shape in steps:
        if who == "torch":
            torch.rand(333, generator=a1), torch.rand(333, generator=a2)
            continue
        g1, g2 = (a1, a2) if who == "a" else (b1, b2)
        np.testing.assert_array_equal(tvm.keep_masks([shape], 0.4, g1)[0], _torch_masks([shape], 0.4, g2)[0].astype(bool))
        assert torch.equal(g1.get_state(), g2.get_state())
    _assert_same_draws([], [], a1, a2)
    _assert_same_draws([], [], b1, b2)
