"""accelerate private API used before building a float32 Trainer (checked by ``tests/test_upstream_internals.py``).

- ``AcceleratorState._shared_state`` / ``AcceleratorState._reset_state``: accelerate keeps one
  ``AcceleratorState`` per process, holding the mixed precision of the *first* Trainer built in it, and
  ``TrainingArguments`` leaves ``ACCELERATE_MIXED_PRECISION=bf16`` in the environment after a ``bf16=True`` one,
  which later arguments without ``bf16`` inherit. So a Multi-BERT run after a CLLMFS run with ``bf16: true`` in one
  process (a notebook, the test session) silently trained in bfloat16. :func:`float32_trainer` undoes both (never
  the process / distributed ``PartialState``).
"""

from __future__ import annotations

import os

#: (module, attribute) pairs this module relies on, for the upgrade test.
PRIVATE_API = (
    ("accelerate.state", "AcceleratorState._shared_state"),
    ("accelerate.state", "AcceleratorState._reset_state"),
)


def float32_trainer() -> None:
    """Make the next Trainer built in this process train in float32, whatever a Trainer before it left behind."""
    from accelerate.state import AcceleratorState

    os.environ["ACCELERATE_MIXED_PRECISION"] = "no"
    if AcceleratorState._shared_state.get("_mixed_precision") not in (None, "no"):
        AcceleratorState._reset_state(reset_partial_state=False)


__all__ = ["PRIVATE_API", "float32_trainer"]
