"""Texts to fine-tune on: Python's standard-library docstrings, or the user's own file.

The standard library is read with ``ast`` from its source files, never imported, so collecting
the corpus runs no module code (no side effects such as ``antigravity`` opening a browser) and
gives the same documents in the same order on every run of the same Python version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FormatError, InputError

# Folders of the standard library that hold tests, demos or GUI code, not library docstrings.
_SKIP_PARTS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "turtledemo", "lib2to3", "__pycache__"}


@dataclass(frozen=True)
class Document:
    """One text and what it is about.

    ``title`` is the aligned partner used by the contrastive objective: a function's or class's
    qualified name and signature for a docstring, the first sentence for a user's text ("" when
    there is no natural partner). ``source`` says where the text came from.
    """

    title: str
    text: str
    source: str


def stdlib_docstrings(limit: int = 2048, min_chars: int = 40, max_chars: int = 2000) -> list[Document]:
    """The first ``limit`` public docstrings of the standard library, in a fixed order.

    Files are walked in sorted path order; in each file, the module, class and function
    docstrings in source order. Private modules and names (leading underscore) are skipped,
    texts are whitespace-normalised, deduplicated, and kept when ``min_chars ≤ len ≤ max_chars``.
    """
    return list(_stdlib_docstrings(limit, min_chars, max_chars))


@functools.lru_cache(maxsize=4)  # the demo trains four models on the same corpus in one process
def _stdlib_docstrings(limit: int, min_chars: int, max_chars: int) -> tuple[Document, ...]:
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    docs: list[Document] = []
    for path in _stdlib_files(root):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for doc in _file_docstrings(path, module):
            if not (min_chars <= len(doc.text) <= max_chars) or doc.text in seen:
                continue
            seen.add(doc.text)
            docs.append(doc)
            if len(docs) >= limit:
                return tuple(docs)
    return tuple(docs)


def _stdlib_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        if _SKIP_PARTS.intersection(rel) or any(p.startswith("_") and p != "__init__.py" for p in rel):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def _file_docstrings(path: Path, module: str) -> list[Document]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []  # a file this Python cannot parse holds no docstrings we can use
    out: list[Document] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name.startswith("_") and child.name != "__init__":
                    continue
                qualname = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    out.append(Document(_signature(child, qualname), _normalise(doc), f"{module}:{child.lineno}"))
                if isinstance(child, ast.ClassDef):
                    visit(child, qualname)

    doc = ast.get_docstring(tree)
    if doc:
        out.append(Document(f"module {module}", _normalise(doc), f"{module}:1"))
    visit(tree, module)
    return out


def _signature(node: ast.AST, qualname: str) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {qualname}"
    return f"def {qualname}({ast.unparse(node.args)})"


def _normalise(text: str) -> str:
    # Docstrings are indented and hard-wrapped; the tokenizer should see prose, not layout.
    return re.sub(r"\s+", " ", text).strip()


def _read_utf8(path: Path, layout: str) -> str:
    """The text of a user's ``--texts`` file; one-line errors when it is missing or not UTF-8."""
    if not path.is_file():
        raise InputError(f"{path}: no such text file; pass --texts a UTF-8 file with {layout}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None


def text_file(path: str | Path) -> list[str]:
    """The texts of a ``--texts`` file, exactly as the activation probes tokenize them: one per
    non-empty line (surrounding whitespace stripped), or for a ``.jsonl`` file the ``"text"``
    field of each line's JSON object. One-line errors name the file (and line)."""
    path = Path(path)
    raw = _read_utf8(path, "one text per line (or .jsonl)")
    if path.suffix.lower() != ".jsonl":
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    else:
        texts = []
        for i, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as e:  # JSONDecodeError, Python's digit limit, deep nesting
                raise FormatError(f"{path}:{i}: not a JSON object ({type(e).__name__}); .jsonl holds one object per line") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise FormatError(f'{path}:{i}: no string "text" field; each .jsonl line must be an object with one')
            if record["text"].strip():
                texts.append(record["text"].strip())
    if not texts:
        raise InputError(f"{path}: holds no text; put one text per line (or a \"text\" field per .jsonl line)")
    return texts


def read_texts(path: str | Path, min_chars: int = 1) -> list[Document]:
    """The documents of a user's text file for the fine-tuner: blank-line separated paragraphs
    when the file has blank lines between texts, else one text per non-empty line; a ``.jsonl``
    file gives one document per line's ``"text"`` (:func:`text_file`).

    Each document's ``title`` is its first sentence and its ``text`` the rest; a one-sentence
    text keeps ``title`` empty (usable by the causal-LM objective, not the contrastive one).
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        blocks = text_file(path)
    else:
        raw = _read_utf8(path, "one text per line")
        blocks = re.split(r"\n\s*\n", raw) if re.search(r"\S\s*\n\s*\n\s*\S", raw) else raw.splitlines()
    docs = []
    for i, block in enumerate(blocks):
        text = _normalise(block)
        if len(text) < max(min_chars, 1):
            continue
        title, rest = _split_first_sentence(text)
        docs.append(Document(title if rest else "", rest or text, f"{path.name}:{i + 1}"))
    if not docs:
        raise InputError(f"{path}: holds no text; put one text per line or separate texts by blank lines")
    return docs


def _split_first_sentence(text: str) -> tuple[str, str]:
    m = re.search(r"(?<=[.!?])\s+(?=\S)", text)
    if not m:
        return text, ""
    return text[: m.start()], text[m.end():]


def contrastive_pairs(docs: list[Document]) -> list[tuple[str, str]]:
    """(anchor, positive) pairs for in-batch contrastive training: each titled document's title
    and text."""
    return [(d.title, d.text) for d in docs if d.title]


def corpus_digest(docs: list[Document]) -> str:
    """A SHA-256 of the documents in order, so a run's config pins the exact corpus it saw."""
    h = hashlib.sha256()
    for d in docs:
        for part in (d.title, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()
