"""What the benchmarks ran on: CPU, cores, load, Python and BLAS/LAPACK details (one dict)."""

from __future__ import annotations

import os
import platform
import sys


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas() -> list[dict]:
    """BLAS/LAPACK libraries loaded in this process (threadpoolctl when it is importable)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not importable"}]
    keep = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{**{k: i.get(k) for k in keep}, "library": os.path.basename(i.get("filepath", ""))}
            for i in threadpool_info()]


def describe() -> dict:
    """The machine and software facts a reader needs to judge the timings."""
    import numpy
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's own BLAS, so that it is listed too)

    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    try:  # torch's CPU wheels carry MKL (statically linked, so threadpoolctl does not list it)
        import torch

        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads, " + (
            "MKL" if torch.backends.mkl.is_available() else "no MKL")
    except ImportError:
        info["torch"] = None
    info["blas"] = _blas()  # after numpy/scipy/torch are imported, so that their libraries show
    return info


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2))
