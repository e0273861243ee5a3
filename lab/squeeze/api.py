"""``lab.squeeze.api.squeeze``: the whole squeeze of one checkpoint (Post-Squeeze, and with ``steps`` Cont-Squeeze), as the CLI runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import InputError
from lab.squeeze.compress import squeeze_target
from lab.squeeze.targets import read_input
from lab.squeeze.write import squeeze_rows, write_squeeze_table, write_squeezed


@dataclass
class Squeeze:
    out: Path
    rows: list[dict]
    table: Path
    continued: Path | None = None
    modules: list = field(default_factory=list, repr=False)


def squeeze(ckpt: str | Path, out: str | Path, *, rank: int | None = None, energy: float | None = None,
            base: str | Path | None = None, modules: str | None = None, seed: int = 0, power_iters: int = 4,
            steps: int = 0, texts: str | Path | None = None, lr: float | None = None,
            results: str | Path = "results", run: str = "squeezes", overwrite: bool = False) -> Squeeze:
    """Squeeze ``ckpt`` to rank ``rank`` (or per module to ``energy``) into the PEFT adapter ``out``.

    This is Post-Squeeze (LoRA-Squeeze's post-hoc variant). Every check and every SVD runs before
    anything is written. With ``steps`` it is Cont-Squeeze: the squeezed adapter then trains that
    many steps at its rank and at the source's scale α/r (:mod:`lab.squeeze.retrain`); the run goes
    to ``<out>-steps``. (In-Squeeze, the rank annealed during training, is ``lab finetune --squeeze-to``.)
    """
    if (rank is None) == (energy is None):
        raise InputError("pass exactly one of rank (--rank) and energy (--energy)")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise InputError(f"--energy {energy}: must be a fraction in (0, 1]")
    if rank is not None and rank < 1:
        raise InputError(f"--rank {rank}: must be at least 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; pass --overwrite or another --out")
    continued = out.with_name(out.name + "-steps")
    if steps and continued.exists() and any(continued.iterdir()) and not overwrite:
        raise InputError(f"{continued}: exists and is not empty (the --steps run goes there); pass --overwrite or another --out")
    source = read_input(ckpt, base, modules)
    squeezed = [squeeze_target(t, rank, energy, seed=seed, power_iters=power_iters) for t in source.targets]
    if steps:
        from lab.deltas import Factors
        from lab.squeeze.retrain import source_scale

        scale = source_scale([t.update.scale for t in source.targets if isinstance(t.update, Factors)])
    write_squeezed(out, source, squeezed, overwrite=overwrite)
    rows = squeeze_rows(out.name, run, source, squeezed)
    table = write_squeeze_table(Path(results), run, rows)
    done = Squeeze(out, rows, table, modules=squeezed)
    if steps:
        if source.base_path is None:
            raise InputError(f"{ckpt}: its config names no base model (base_model_name_or_path); --steps needs one")
        from lab.squeeze.retrain import continue_training

        done.continued = continue_training(out, Path(ckpt), continued, steps, source.base_path,
                                           max(sq.k for sq in squeezed), scale=scale, start_step=source.step,
                                           texts=str(texts) if texts else None, lr=lr, overwrite=overwrite)
    return done
