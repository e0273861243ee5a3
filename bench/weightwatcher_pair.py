"""WeightWatcher's half of the 1B-pair comparison (issue 23 §4): ``analyze()`` on the fine-tuned model.

    /tmp/wwvenv/bin/python bench/weightwatcher_pair.py FT_DIR OUT.json [--modules REGEX]

Runs in WeightWatcher's own virtual environment (never lab's; see bench/RESULTS.md "How to run"),
started by ``bench/bench_memory.py --weightwatcher``, which times it and samples its RSS from
outside exactly as it does ``lab analyze``. What it does is what a user of WeightWatcher 0.7.7 does
with a saved model: every tensor of the safetensors shards read into a float32 state dict (torch),
then ``WeightWatcher(model=state_dict).analyze()`` with its defaults (the ESD of each weight matrix
W by SciPy's SVD and a power-law fit; matrices with more than ``max_N`` rows, here the 128256-row
embedding, are skipped by WeightWatcher itself). ``--modules``: keep only the 2-D tensors whose
name matches (as ``lab analyze --modules`` does), for a subset measured by both tools.
Writes the number of matrices analysed, the seconds of the load and of ``analyze()`` and the
version to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ft", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--modules", default=None, help="regular expression searched in tensor names")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from safetensors.torch import load_file

    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    state = {}
    for shard in sorted(args.ft.glob("*.safetensors")):
        for name, tensor in load_file(str(shard)).items():
            if tensor.ndim == 2 and (args.modules is None or re.search(args.modules, name)):
                state[name] = tensor.to(torch.float32)
    t1 = time.perf_counter()
    details = ww.WeightWatcher(model=state).analyze()
    t2 = time.perf_counter()
    args.out.write_text(json.dumps({
        "tool": "weightwatcher", "version": ww.__version__, "tensors_loaded": len(state),
        "matrices_analysed": int(len(details)), "load_s": t1 - t0, "analyze_s": t2 - t1,
        "alpha_median": float(details["alpha"].median()) if len(details) else None,
    }, indent=2))


if __name__ == "__main__":
    main()
