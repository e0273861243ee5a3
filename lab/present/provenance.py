"""Provenance of runs from their manifests: when each ran and how long, every file it read with
its size and sha256, its options and the package versions, and the tables it wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from lab.present.blocks import TableBlock
from lab.store import Run


@dataclass
class RunInfo:
    """One run's provenance from its manifest."""

    name: str
    status: str
    summary: TableBlock  # started, ended, seconds, error
    inputs: TableBlock
    options: TableBlock
    versions: TableBlock
    tables: TableBlock


def overview(runs: list[Run]) -> TableBlock:
    """The runs at a glance: status, when, how long, how many checkpoints and files, which tables."""
    rows = []
    for run in runs:
        m = run.manifest
        checkpoints = (m.get("inputs") or {}).get("checkpoints", [])
        rows.append({"run": run.name, "status": m.get("status", "unknown"), "started": m.get("started", ""),
                     "seconds": m.get("seconds"), "checkpoints": len(checkpoints),
                     "files read": sum(len(c.get("files", [])) for c in checkpoints) + len((m.get("inputs") or {}).get("base", [])),
                     "tables": ", ".join(run.tables())})
    return TableBlock.from_frame("Runs", pd.DataFrame(rows), "a run whose status is not complete stopped early")


def run_info(run: Run) -> RunInfo:
    """Provenance of one run: when, inputs with sizes and hashes, options, versions and tables."""
    m = run.manifest
    summary = pd.DataFrame(
        [("status", m.get("status", "")), ("started", m.get("started", "")), ("ended", m.get("ended", "")),
         ("seconds", m.get("seconds", "")), ("folder", str(run.path))]
        + ([("error", m["error"])] if m.get("error") else []),
        columns=["field", "value"],
    )
    inputs = []  # one row per file: what exactly was read, so the numbers can be traced to bytes
    for c in (m.get("inputs") or {}).get("checkpoints", []):
        for f in c.get("files", []) or [{}]:
            inputs.append({"checkpoint": c.get("name"), "step": c.get("step"), "format": c.get("format"),
                           "file": f.get("path", c.get("path")), "bytes": f.get("size"), "sha256": f.get("sha256", "")})
    for f in (m.get("inputs") or {}).get("base", []):
        inputs.append({"checkpoint": "base", "step": None, "format": "full", "file": f.get("path"),
                       "bytes": f.get("size"), "sha256": f.get("sha256", "")})
    options = pd.DataFrame([(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in (m.get("options") or {}).items()],
                           columns=["option", "value"])
    versions = pd.DataFrame(list((m.get("versions") or {}).items()), columns=["package", "version"])
    tables = pd.DataFrame(list((m.get("tables") or {}).items()), columns=["table", "rows"])
    return RunInfo(
        name=run.name,
        status=str(m.get("status", "unknown")),
        summary=TableBlock.from_frame("Run", summary),
        inputs=TableBlock.from_frame("Inputs", pd.DataFrame(inputs), "every file read, with its size and sha256"),
        options=TableBlock.from_frame("Options", options),
        versions=TableBlock.from_frame("Versions", versions),
        tables=TableBlock.from_frame("Tables", tables),
    )
