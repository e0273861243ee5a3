"""The corpus: standard-library docstrings read without importing, and the user's text files."""

from __future__ import annotations

import inspect
import re

import pytest

from lab.errors import FormatError, InputError
from lab.finetune import corpus
from lab.finetune.corpus import contrastive_pairs, corpus_digest, read_texts, stdlib_docstrings


@pytest.fixture(scope="module")
def docs():
    return stdlib_docstrings(limit=2048)


def test_stdlib_docstrings_are_deterministic_unique_and_public(docs):
    corpus._stdlib_docstrings.cache_clear()  # walk the standard library again, not the memo
    again = stdlib_docstrings(limit=2048)
    assert docs == again and corpus_digest(docs) == corpus_digest(again)
    assert len(docs) == 2048
    assert len({d.text for d in docs}) == len(docs)
    assert all(40 <= len(d.text) <= 2000 for d in docs)
    # no private module or name: the last dotted part of a title never starts with "_" (except __init__)
    names = [re.split(r"[ (]", d.title)[1] for d in docs]
    assert not [n for n in names if any(p.startswith("_") and p != "__init__" for p in n.split("."))]


def test_docstrings_match_the_imported_objects(docs):
    # Independent route: import the module and ask inspect for the docstring the ast walk found.
    import json

    by_title = {d.title: d.text for d in docs}
    signature = f"def json.dumps{inspect.signature(json.dumps)}"
    found = [t for t in by_title if t.startswith("def json.dumps(")]
    assert found, "json.dumps should be in the first 2048 docstrings"
    assert by_title[found[0]] == " ".join(inspect.getdoc(json.dumps).split())
    # ast.unparse and inspect.signature agree on the parameter names and their order
    params = lambda s: re.findall(r"[(,*]\s*\*?(\w+)", s)  # noqa: E731
    assert params(found[0]) == params(signature)
    import json.tool  # its module docstring is within the length limits (json's own is longer)

    assert by_title["module json.tool"] == " ".join(inspect.getdoc(json.tool).split())


def test_limit_is_a_prefix(docs):
    assert stdlib_docstrings(limit=100) == docs[:100]


def test_read_texts_lines_and_paragraphs(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("First one. Its rest.\n\na single sentence without a partner\n", encoding="utf-8")
    # a blank line between texts makes the file paragraph-separated
    got = read_texts(lines)
    assert [(d.title, d.text) for d in got] == [("First one.", "Its rest."), ("", "a single sentence without a partner")]

    per_line = tmp_path / "per-line.txt"
    per_line.write_text("Alpha beta. Gamma delta.\nOne sentence only\n", encoding="utf-8")
    got = read_texts(per_line)
    assert [(d.title, d.text) for d in got] == [("Alpha beta.", "Gamma delta."), ("", "One sentence only")]
    assert contrastive_pairs(got) == [("Alpha beta.", "Gamma delta.")]

    paragraphs = tmp_path / "paragraphs.txt"
    paragraphs.write_text("A wrapped\ntext. Goes on\nhere.\n\n\nSecond text. More.\n", encoding="utf-8")
    got = read_texts(paragraphs)
    assert [(d.title, d.text) for d in got] == [("A wrapped text.", "Goes on here."), ("Second text.", "More.")]


def test_read_texts_errors(tmp_path):
    with pytest.raises(InputError, match="no such text file"):
        read_texts(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(InputError, match="holds no text"):
        read_texts(empty)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(FormatError, match="not UTF-8"):
        read_texts(latin)
