"""Training logs people can read: the Trainer's console lines with 4 significant digits, not 16.

transformers prints each log dict as it is (``{'loss': 0.27789425849914551, ...}``); only ``epoch`` is
rounded. :func:`use_readable_logs` swaps the Trainer's progress (or printer) callback for one that rounds its own
copy of the numbers; ``trainer_state.json`` and every other callback still get the full values.
"""

from __future__ import annotations

from transformers.trainer_callback import PrinterCallback, ProgressCallback


def readable(logs: dict, digits: int = 4) -> dict:
    """A copy of ``logs`` with floats at ``digits`` significant digits (``total_flos`` left out, as upstream)."""
    return {k: (float(f"{v:.{digits}g}") if isinstance(v, float) else v) for k, v in logs.items()
            if k != "total_flos"}


class ReadableProgressCallback(ProgressCallback):
    """transformers' progress bar, writing rounded log lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=readable(logs or {}), **kwargs)


class ReadablePrinterCallback(PrinterCallback):
    """transformers' printer (``disable_tqdm=True``), printing rounded log lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=readable(logs or {}), **kwargs)


def use_readable_logs(trainer) -> None:
    """Replace the Trainer's console callback (progress bar or printer) with its rounding twin."""
    for plain, readable_cls in ((ProgressCallback, ReadableProgressCallback), (PrinterCallback, ReadablePrinterCallback)):
        if any(type(cb) is plain for cb in trainer.callback_handler.callbacks):
            trainer.remove_callback(plain)
            trainer.add_callback(readable_cls)


__all__ = ["ReadablePrinterCallback", "ReadableProgressCallback", "readable", "use_readable_logs"]
