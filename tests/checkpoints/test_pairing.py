"""Base key lookup on real state-dict keys: exact, then by unambiguous suffix in both directions
(a base saved from another head class), never across blocks, and ambiguity is an error."""

from __future__ import annotations

import pytest

import builders
from lab.checkpoints.pairing import BaseKeys
from lab.errors import MatchError


@pytest.fixture(scope="module")
def bert_keys():
    return list(builders.tiny_bert(seed=0).state_dict())


def test_exact_and_prefixed_both_ways(bert_keys):
    plain = BaseKeys(bert_keys, "base")
    prefixed = BaseKeys([f"bert.{k}" for k in bert_keys], "base")
    for key in bert_keys:
        assert plain.find(key) == key
        assert prefixed.find(key) == f"bert.{key}"  # fine-tune from BertModel, base from a head class
        assert plain.find(f"bert.{key}") == key  # and the other way round
        assert prefixed.find(f"roberta.{key}") == f"bert.{key}"  # both sides prefixed differently


def test_never_pairs_across_blocks_or_on_a_bare_name(bert_keys):
    one_layer = BaseKeys([k for k in bert_keys if ".layer.1." not in k], "base")
    assert one_layer.find("encoder.layer.1.attention.self.query.weight") is None
    assert one_layer.find("weight") is None
    assert one_layer.find("something.else.weight") is None


def test_ambiguous_suffix_is_an_error(bert_keys):
    two = BaseKeys([f"a.{k}" for k in bert_keys] + [f"b.{k}" for k in bert_keys], "twin-base")
    with pytest.raises(MatchError, match="twin-base.*several base tensors.*a.encoder.layer.0.attention.self.query.weight"):
        two.find("encoder.layer.0.attention.self.query.weight")
    assert two.find("a.encoder.layer.0.attention.self.query.weight") == "a.encoder.layer.0.attention.self.query.weight"
