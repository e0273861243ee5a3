"""The corpus: standard-library docstrings read without importing, and the user's text files."""

from __future__ import annotations

import ast
import email.policy  # noqa: F401  (its class decorator rewrites method docstrings: the test must see one)
import inspect
import json
import re
import sys
import sysconfig
import tokenize
from pathlib import Path

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


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _parameter_names(title: str) -> list[str]:
    """The parameter names of a ``def module.f(...)`` title, in signature order (read back with ast)."""
    args = ast.parse(f"def f({title[title.index('(') + 1:title.rindex(')')]}): pass").body[0].args
    return ([a.arg for a in args.posonlyargs + args.args] + ([args.vararg.arg] if args.vararg else [])
            + [a.arg for a in args.kwonlyargs] + ([args.kwarg.arg] if args.kwarg else []))


def _resolve(module, qualname: str):
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


def _is_stdlib_source(module, name: str) -> bool:
    """Whether the imported ``module`` was loaded from the very standard-library file the walk read: not,
    say, from setuptools' vendored distutils, which setuptools makes ``import distutils`` load (imported
    by earlier tests in CI). A prefix test would not do: a Python without a venv keeps site-packages
    inside the standard library's folder."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(STDLIB).joinpath(*name.split("."))
    return Path(file).resolve() in {(path / "__init__.py").resolve(), path.with_suffix(".py").resolve()}


def test_docstrings_match_the_imported_objects(docs):
    """Independent route: for the functions and classes found whose module this process has already
    imported (so the test runs no module code) from the file the walk read, and that are defined in
    that file (not replaced by a C implementation), inspect gives the same docstring and parameters.
    Which documents these are depends on the Python version; that they agree does not."""
    functions = classes = 0
    for doc in docs:
        module_name = doc.source.rsplit(":", 1)[0]
        module = sys.modules.get(module_name)
        kind, name = doc.title.split(" ", 1)
        if module is None or kind == "module" or not _is_stdlib_source(module, module_name):
            continue
        qualname = name.split("(", 1)[0].removeprefix(module_name + ".")
        obj = _resolve(module, qualname)
        # another library may have replaced or wrapped the object since (e.g. a patched stdlib
        # function): only the module's own object is compared with its source
        if getattr(obj, "__module__", None) != module_name or getattr(obj, "__qualname__", None) != qualname:
            continue
        if kind == "def":
            function = inspect.unwrap(obj) if callable(obj) else None
            if not inspect.isfunction(function) or function.__code__.co_filename != module.__file__:
                continue
            functions += 1
            # the docstring CPython compiled from the file (a decorator may rewrite __doc__ afterwards, as
            # email.policy's _extend_docstrings does for a docstring starting with "+")
            compiled = function.__code__.co_consts[0] if function.__code__.co_consts else None
            compiled = inspect.cleandoc(compiled) if isinstance(compiled, str) else ""
            assert _normalised(compiled) == doc.text, doc.title
            try:
                signature = list(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                continue
            assert _parameter_names(doc.title) == signature, doc.title
        elif inspect.isclass(obj):
            # defined by this file's class statement: it holds methods compiled from this file (a C class
            # such as datetime.timedelta, which the module re-exports under its own name, holds none)
            if not any(inspect.isfunction(v) and v.__code__.co_filename == module.__file__ for v in vars(obj).values()):
                continue
            classes += 1
            assert _normalised(obj.__doc__ or "") == doc.text, doc.title
    # the first 2048 documents reach well into the alphabet (abc, argparse, ast, collections, ...): many are imported
    assert functions >= 50 and classes >= 10, (functions, classes)


def test_module_docstrings_match_the_first_string_of_the_file(docs):
    """Module docstrings without importing: the first token of each file that tokenize sees (past the
    encoding, comments and blank lines) is that string literal."""
    root = Path(sysconfig.get_paths()["stdlib"])
    modules = [d for d in docs if d.title.startswith("module ")]
    assert modules
    for doc in modules:
        path = root.joinpath(*doc.title.removeprefix("module ").split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        with open(path, "rb") as f:
            first = next(t for t in tokenize.tokenize(f.readline)
                         if t.type not in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE))
        assert first.type == tokenize.STRING, (doc.title, first)
        assert _normalised(inspect.cleandoc(ast.literal_eval(first.string))) == doc.text, doc.title


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


def test_text_file_lines_and_jsonl_give_the_same_windows_texts(tmp_path):
    """The activation probes' corpus: each line whole (a multi-sentence line is not split into a
    title and a rest, as the fine-tuner's documents are), and a .jsonl file's "text" fields equal
    the same lines in a plain file."""
    from lab.engine.subjects import ModelSubject
    from lab.finetune.corpus import text_file

    lines = ["First sentence. Second sentence of the same text.", "  another text  ", "a third, with unicode: ü"]
    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    records = tmp_path / "texts.jsonl"
    records.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(lines)) + "\n", encoding="utf-8")
    expected = [t.strip() for t in lines]
    assert text_file(plain) == expected == text_file(records)
    assert ModelSubject("base", None, tmp_path, "base", corpus=records).texts() == expected
    # the fine-tuner reads .jsonl too: one document per record
    assert [d.title + (" " if d.title else "") + d.text for d in read_texts(records)] == expected
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"title": "no text"}\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"bad\.jsonl:2: no string \"text\" field"):
        text_file(bad)
