"""The report's content kept beside the results it was built from, so that a second report of the same results
(any format) neither summarises nor draws again.

An entry holds every family's findings, headline figure and section (figures as PNG bytes), built with one
choice of overview and detail figures at one resolution. Its address is content-addressed: the sha256 of

* every file the report reads: each run's ``manifest.json`` and ``*.parquet`` tables (path relative to the
  results folder, size and bytes), and any plugin file a manifest records (its families draw the sections);
* the resolution (dpi);
* a fingerprint of the code that turns tables into that content: the source of ``lab/present``,
  ``lab/report`` and ``lab/store``, and the versions of lab, matplotlib, numpy, pandas, pyarrow and Pillow.

So a changed table, run, option or line of that code is a new address, and an entry never outlives what made
it. Entries live in ``RESULTS/.lab-cache/report/<address>-o<0|1>d<0|1>.pickle`` (o: overview figures drawn,
d: detail figures drawn); a report that needs fewer figures takes an entry that has more (md after html,pdf).
An entry is written atomically (a temporary file renamed into place); one that cannot be read, is corrupt,
names another address or holds anything but the report's own classes is ignored and rebuilt. A results folder
that cannot be written to simply gets no entry. The title and the time of writing are not part of an entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from lab.fingerprint import source_digest, versions
from lab.present.figures.common import Chart
from lab.report.document import undrawn
from lab.store import Run

CACHE_DIR = Path(".lab-cache") / "report"
_FORMAT = 1
SOURCE_FOLDERS = ("present", "report", "store")  # folders of lab whose source the fingerprint hashes
PACKAGES = ("lab", "matplotlib", "numpy", "pandas", "pyarrow", "pillow")


def address(results_dir: str | Path, runs: Sequence[Run], dpi: int) -> str:
    """The sha256 (hex) of everything the report's content is computed from (see the module's docstring)."""
    root = Path(results_dir).resolve()
    h = hashlib.sha256()
    h.update(f"format={_FORMAT};dpi={int(dpi)};{fingerprint()}\0".encode())
    plugins: set[str] = set()
    for run in runs:
        folder = Path(run.path).resolve()
        files = [folder / "manifest.json"] + sorted(folder.glob("*.parquet"))
        for file in files:
            _add_file(h, file, os.path.relpath(file, root))
        plugins.update(str(p["path"]) for p in run.manifest.get("plugins", []) or [] if p.get("path"))
    for plugin in sorted(plugins):
        _add_file(h, Path(plugin), "plugin:" + plugin)
    return h.hexdigest()


def _add_file(h, file: Path, name: str) -> None:
    try:
        data = file.read_bytes()
    except OSError:  # a file gone (a plugin moved): it counts as absent
        h.update(f"{name}\0absent\0".encode())
        return
    h.update(f"{name}\0{len(data)}\0".encode())
    h.update(data)


def fingerprint() -> str:
    """The code and packages that turn tables into a report's content: a hash of the source of lab/present,
    lab/report and lab/store, and their versions."""
    return ";".join([f"source={source_digest(SOURCE_FOLDERS)}"] + versions(PACKAGES))


def _path(results_dir: str | Path, key: str, overview: bool, details: bool) -> Path:
    return Path(results_dir) / CACHE_DIR / f"{key}-o{int(overview)}d{int(details)}.pickle"


def load(results_dir: str | Path, key: str, overview: bool, details: bool) -> list | None:
    """The families' parts stored at ``key`` with at least the figures asked for (the extra ones put back
    as undrawn), or None when there is no usable entry."""
    for o, d in ((overview, details), (True, details), (overview, True), (True, True)):
        if (o, d) != (overview, details) and not (o >= overview and d >= details):
            continue
        entry = _read(_path(results_dir, key, o, d))
        if entry is not None and entry.get("key") == key and entry.get("format") == _FORMAT:
            return [_fewer(part, overview, details) for part in entry["parts"]]
    return None


def store(results_dir: str | Path, key: str, overview: bool, details: bool, parts: list, dpi: int) -> None:
    """Keep the families' parts at ``key`` (their charts as PNG bytes at ``dpi``; the parts given are left as
    they are). Nothing is stored where the results folder cannot be written to."""
    entry = {"format": _FORMAT, "key": key, "parts": [_portable(part, dpi) for part in parts]}
    path = _path(results_dir, key, overview, details)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError:  # a read-only results folder: the report goes on without an entry
        return
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _portable(part: tuple, dpi: int) -> tuple:
    """A family's part as it is stored: every chart as PNG bytes only, undrawn figures as placeholders."""
    findings, chart, section = part
    return (findings, _png_only(chart, dpi) if chart is not None else None,
            replace(section, charts=[_png_only(c, dpi) for c in section.charts],
                    details=[_png_only(c, dpi) for c in section.details],
                    pending=[(is_detail, undrawn) for is_detail, _ in section.pending]))


def _png_only(chart: Chart, dpi: int) -> Chart:
    return Chart(None, chart.title, chart.caption, chart.anchor, {dpi: chart.png(dpi)})


def _fewer(part: tuple, overview: bool, details: bool) -> tuple:
    """A stored part with the figures a report does not show put back as undrawn (their number is kept)."""
    findings, chart, section = part
    pending = list(section.pending)
    if not overview:
        pending += [(False, undrawn)] * len(section.charts)
    if not details:
        pending += [(True, undrawn)] * len(section.details)
    return findings, chart, replace(section, charts=section.charts if overview else [],
                                    details=section.details if details else [], pending=pending)


# what an entry may hold: the report's own classes and plain values, nothing that runs code when read
_ALLOWED = {
    ("lab.report.document", "Section"), ("lab.present.figures.common", "Chart"), ("lab.present.blocks", "TableBlock"),
    ("lab.present.sentences", "FamilyFindings"), ("lab.present.sentences", "Sentence"),
    ("lab.present.sentences", "Number"), ("lab.report.document", "undrawn"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a report")


def _read(path: Path) -> dict | None:
    """An entry, or None when it is absent, unreadable, corrupt or holds anything else."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        entry = _Unpickler(io.BytesIO(data)).load()
    except Exception:  # any corruption: the report is rebuilt and the entry replaced
        return None
    return entry if isinstance(entry, dict) else None
