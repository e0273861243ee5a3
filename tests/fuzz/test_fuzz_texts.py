"""``--texts`` files, the corpus of the probes that run models on text (attention, thresholds) and
of ``lab merge``'s hidden-state error: any bytes a user can hand over (empty, binary, invalid
UTF-8, huge lines, .jsonl without "text", nested garbage) end in windows of exactly L tokens or in
one line naming the file, never in another exception.

The property runs in-process (the reading and the windowing, with two real tokenizers); explicit
cases go through ``lab analyze --probes attention`` and ``lab merge`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model

import builders
from fuzz_helpers import Inputs, budget, check_error, cli_contract, json_values, lab_command, names, workspace
from lab.engine.subjects import ModelSubject
from lab.errors import LabError
from lab.probes.windows import make_windows


@pytest.fixture(scope="module")
def text_inputs(tmp_path_factory) -> dict:
    """A tiny LLaMA base with a word-level tokenizer and two LoRA adapters on it."""
    root = tmp_path_factory.mktemp("texts")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    builders.word_tokenizer(base)
    adapters = []
    for seed in (1, 2):
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
        builders.randomize_lora(model, seed=seed, std=0.2)
        model.save_pretrained(root / f"lora{seed}")
        adapters.append(root / f"lora{seed}")
    return {"base": base, "adapters": adapters}


@pytest.fixture(scope="module")
def tokenizers(text_inputs):
    from transformers import AutoTokenizer

    from lab.finetune.models import minilm_path

    return {"word": AutoTokenizer.from_pretrained(text_inputs["base"]), "minilm": AutoTokenizer.from_pretrained(minilm_path())}


words = st.sampled_from(builders.WORDS + ["Ünïcödé", "\u200b", "\x00", "🙂", "\ud7ff", "tab\there"])
lines = st.lists(words, max_size=30).map(" ".join)
plain = st.lists(lines, max_size=12).map(lambda ls: "\n".join(ls).encode())
jsonl = st.lists(st.one_of(lines.map(lambda t: {"text": t}), json_values), max_size=8).map(
    lambda records: "\n".join(json.dumps(r) for r in records).encode())
contents = st.one_of(
    plain,
    jsonl,
    st.binary(max_size=300),  # mostly invalid UTF-8
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),  # lone surrogates: invalid UTF-8
    st.integers(1, 50_000).map(lambda n: ("the model " * n).encode()),  # one huge line
    st.sampled_from([b"", b"\n\n \n", b"\xef\xbb\xbfthe model reads\n", b"{}\n", b'{"text": 3}\n', b"[" * 5000 + b"\n"]),
)


@budget(1.5)
@given(content=contents, suffix=st.sampled_from([".txt", ".jsonl"]), tokenizer=st.sampled_from(["word", "minilm"]),
       seq_len=st.integers(2, 16), n=st.integers(1, 6))
def test_texts_file_gives_exact_windows_or_names_the_file(text_inputs, tokenizers, content, suffix, tokenizer, seq_len, n):
    with workspace() as work:
        path = Path(work) / f"texts{suffix}"
        path.write_bytes(content)
        subject = ModelSubject("base", None, text_inputs["base"], "base", corpus=path)
        try:
            windows = make_windows(tokenizers[tokenizer], subject.texts(), (seq_len,), n, subject.corpus_name)
        except LabError as error:
            check_error(error, [path])
            return
        assert [len(w.ids) for w in windows] == [seq_len] * n
        assert [w.offset for w in windows] == [i * seq_len for i in range(n)]


CASES = {
    "empty": b"",
    "blank lines": b"\n  \n\t\n",
    "binary": bytes(range(256)) * 4,
    "invalid utf-8": b"the model reads \xff\xfe a text\n",
    "jsonl without text": b'{"title": "the model"}\n{"body": "reads a text"}\n',
    "jsonl garbage": b'{"text": "the model reads"}\nnot json at all\n',
    "too short": b"the model\n",
    "huge line": ("the model reads a text " * 40_000).encode() + b"\n",
    "jsonl": b'{"text": "the model reads a text and every token"}\n{"text": "attends to the tokens before it"}\n' * 4,
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_texts_file_in_process(text_inputs, tokenizers, case):
    """Every named case through the reading and windowing the probes use: windows, or one line naming the file."""
    with workspace() as work:
        path = Path(work) / ("texts.jsonl" if case.startswith("jsonl") else "texts.txt")
        path.write_bytes(CASES[case])
        subject = ModelSubject("base", None, text_inputs["base"], "base", corpus=path)
        try:
            windows = make_windows(tokenizers["word"], subject.texts(), (4,), 2, subject.corpus_name)
        except LabError as error:
            check_error(error, [path])
            assert case not in ("huge line", "jsonl"), str(error)
            return
        assert case in ("huge line", "jsonl") and [len(w.ids) for w in windows] == [4, 4]


# each command starts a Python that imports torch and transformers (~10 s here): a few cases only
@pytest.mark.parametrize("case", ["invalid utf-8", "jsonl without text"])
def test_cli_analyze_with_a_damaged_texts_file(text_inputs, case):
    """``lab analyze --probes attention --texts F``: exit 0 with a complete run, or exit 2 with one line naming F."""
    with workspace() as work:
        texts = Path(work) / ("texts.jsonl" if case.startswith("jsonl") else "texts.txt")
        texts.write_bytes(CASES[case])
        inputs = Inputs(text_inputs["adapters"][0], text_inputs["base"])
        code = cli_contract(work, inputs, [texts], extra=["--probes", "attention", "--texts", str(texts),
                                                          "--seq-len", "4", "--windows", "2"])
        assert code == (0 if case in ("huge line", "jsonl") else 2)


@pytest.mark.parametrize("case", ["jsonl without text"])
def test_cli_merge_with_a_damaged_texts_file(text_inputs, case):
    """``lab merge --base B --texts F``: one line naming F, exit 2, and no merged adapter written."""
    with workspace() as work:
        texts = Path(work) / ("texts.jsonl" if case.startswith("jsonl") else "texts.txt")
        texts.write_bytes(CASES[case])
        out = Path(work) / "merged"
        done = subprocess.run([*lab_command(), "merge", *map(str, text_inputs["adapters"]), "--out", str(out),
                               "--base", str(text_inputs["base"]), "--texts", str(texts), "--seq-len", "4",
                               "--windows", "2", "--results", str(Path(work) / "results")],
                              capture_output=True, text=True, cwd=work, timeout=300)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert names(lines[0], texts), lines[0]
        assert not out.exists() or not any(out.iterdir())
