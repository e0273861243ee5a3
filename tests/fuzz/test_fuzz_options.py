"""``--set PROBE.OPTION=VALUE`` with values drawn from each option's declared type (and text that is not
of it): the options validate (the field then holds the value converted), or fail with one OptionError
line naming the option; a run with options that validated completes under the contract or fails with
one LabError line."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lab
from fuzz_helpers import RUN, budget, check_failed_run, check_run, numbers, workspace
from lab.errors import LabError
from lab.probes import available
from lab.probes.options import OptionError, _hints, _is_optional, build_options, parse_assignments

PROBES = available()
OPTIONS = sorted((name, f.name) for name, p in PROBES.items() for f in dataclasses.fields(p.options))
# module-scope probes that run on an adapter alone in a second (the model-scope ones need texts and a model)
RUNNABLE = sorted((name, field) for name, field in OPTIONS if PROBES[name].scope == "module")
WORDS = ("delta", "weight", "random", "none", "", "0", "16", "true", "64,128", " ")


def _values(tp, small: bool) -> st.SearchStrategy[str]:
    """CLI text for a value of type ``tp`` (``small``: ints kept where a run stays fast)."""
    if _is_optional(tp):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return st.sampled_from(["none", "None", ""]) | _values(inner, small)
    if typing.get_origin(tp) is tuple:
        return st.lists(_values(typing.get_args(tp)[0], small), max_size=3).map(",".join)
    if tp is bool:
        return st.sampled_from(["true", "false", "1", "0", "yes", "no", "on", "off", "True", "FALSE"])
    if tp is int:
        return st.integers(min_value=-5, max_value=40 if small else 10**30).map(str)
    if tp is float:
        return numbers.map(str)
    return st.sampled_from(WORDS) | st.text(max_size=12)


def assignment(options, small: bool):
    """(probe, field, text): a value of the field's declared type, or any text (off type) a third of the time."""
    return st.sampled_from(options).flatmap(lambda o: st.tuples(
        st.just(o[0]), st.just(o[1]),
        st.one_of(_values(_hints(PROBES[o[0]].options)[o[1]], small), _values(_hints(PROBES[o[0]].options)[o[1]], small),
                  st.text(max_size=12))))


def _check_option_error(error: LabError, probe: str, field: str) -> None:
    message = str(error)
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)
    assert f"{probe}.{field}" in message or f"probe {probe!r}" in message, message  # names the option, or its probe


@budget(0.3)
@given(choice=assignment(OPTIONS, small=False))
def test_set_options_validate_or_fail_in_one_line(choice):
    probe, field, text = choice
    given_options = parse_assignments([f"{probe}.{field}={text}"])
    try:
        built = build_options(PROBES.values(), given_options)
    except OptionError as error:
        _check_option_error(error, probe, field)
        return
    value = getattr(built[probe], field)
    tp = _hints(PROBES[probe].options)[field]
    if value is not None:  # the field holds a value of its declared type
        base = next(a for a in typing.get_args(tp) if a is not type(None)) if _is_optional(tp) else tp
        base = tuple if typing.get_origin(base) is tuple else base
        assert isinstance(value, base) and not (base is int and isinstance(value, bool)), (field, value)
    else:
        assert _is_optional(tp), (field, value)


@pytest.fixture(scope="module")
def small_adapter(llama_lora):
    return llama_lora


@budget(0.2)
@given(choice=assignment(RUNNABLE, small=True), with_base=st.booleans())
def test_a_run_with_set_options_completes_or_fails_in_one_line(small_adapter, choice, with_base):
    probe, field, text = choice
    try:
        options = build_options(PROBES.values(), parse_assignments([f"{probe}.{field}={text}"]))
    except OptionError as error:
        _check_option_error(error, probe, field)
        return
    with workspace() as work:
        out = work / "results"
        try:
            run = lab.analyze(small_adapter.ckpt, base=small_adapter.base if with_base else None, out=out, run=RUN,
                              probes=["deltas", probe], options={probe: options[probe]}, progress=False)
        except LabError as error:
            message = str(error)
            assert message.strip() and "\n" not in message, repr(message)
            check_failed_run(out)
            return
        check_run(run)
