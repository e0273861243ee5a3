"""Which base tensor belongs to a fine-tuned tensor or adapter module.

Names match exactly when base and fine-tune were saved from the same class. A base saved
from another head class differs by a leading prefix (``bert.``, ``model.``, ``transformer.``)
on either side, so the fallback compares dotted suffixes: first the whole key against the
ends of base keys, then the key with leading components dropped. Dropping stops before the
block index (``layers.N``) or, without one, before the module's own name, so that
``layers.5.q_proj`` never matches ``layers.0.q_proj`` and a bare ``weight`` never matches.
A suffix that fits several base keys is an error, never a guess.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lab.errors import MatchError

_LAYER_CONTAINER = re.compile(r"^(?:layers|layer|h|blocks)$")


class BaseKeys:
    """Looks up base tensor keys for fine-tuned keys (exact, then by unambiguous suffix)."""

    def __init__(self, keys: list[str], where: str) -> None:
        self.keys = set(keys)
        self.where = where  # the base path, for messages
        self._by_suffix: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            parts = key.split(".")
            for i in range(1, len(parts)):
                self._by_suffix[".".join(parts[i:])].append(key)

    def find(self, key: str, source: object = None) -> str | None:
        """The base key for ``key``, None when the base has none; MatchError when ambiguous.

        ``source`` is the file ``key`` comes from: the message names it first, since an
        ambiguous key is usually the fine-tune's doing (a damaged name, another model class).
        """
        if key in self.keys:
            return key
        parts = key.split(".")
        if len(parts) < 2:  # a bare tensor name says nothing about which module it belongs to
            return None
        for start in range(0, _last_start(parts) + 1):
            query = ".".join(parts[start:])
            hits = ([query] if start and query in self.keys else []) + self._by_suffix.get(query, [])
            hits = sorted(set(hits))
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                shown = ", ".join(hits[:3]) + (" ..." if len(hits) > 3 else "")
                if source is None:
                    head = f"{self.where}: tensor '{key}' matches several base tensors"
                else:
                    head = f"{source}: tensor '{key}' matches several tensors of the base {self.where}"
                raise MatchError(f"{head} ({shown}); pass a base saved from the same model class")
        return None


def _last_start(parts: list[str]) -> int:
    """The furthest start index a suffix may begin at: the block container, else the module name."""
    for i in range(len(parts) - 1):
        if _LAYER_CONTAINER.match(parts[i]) and parts[i + 1].isdigit():
            return i
    return max(len(parts) - 2, 0)
