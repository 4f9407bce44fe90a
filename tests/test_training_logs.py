"""Console training logs at 4 significant digits, the trainer state at full precision."""

from transformers.trainer_callback import CallbackHandler, PrinterCallback, ProgressCallback, TrainerState

from ner_adapters.training_logs import ReadablePrinterCallback, ReadableProgressCallback, readable, use_readable_logs


def test_floats_are_rounded_in_a_copy():
    logs = {"loss": 0.27789425849914551, "learning_rate": 0.0009876543210, "epoch": 1.0, "step": 5,
            "total_flos": 1.0e12, "note": "x"}
    shown = readable(logs)
    assert shown == {"loss": 0.2779, "learning_rate": 0.0009877, "epoch": 1.0, "step": 5, "note": "x"}
    assert logs["loss"] == 0.27789425849914551  # the state's copy keeps every digit


class _Trainer:
    def __init__(self, callbacks):
        self.callback_handler = CallbackHandler(callbacks, None, None, None, None)

    def add_callback(self, callback):
        self.callback_handler.add_callback(callback)

    def remove_callback(self, callback):
        self.callback_handler.remove_callback(callback)


def test_the_console_callback_is_swapped_and_prints_rounded(capsys):
    trainer = _Trainer([ProgressCallback])
    use_readable_logs(trainer)
    assert [type(c) for c in trainer.callback_handler.callbacks] == [ReadableProgressCallback]
    printer = _Trainer([PrinterCallback])
    use_readable_logs(printer)
    (callback,) = printer.callback_handler.callbacks
    assert type(callback) is ReadablePrinterCallback
    state = TrainerState()
    callback.on_log(None, state, None, logs={"loss": 0.27789425849914551})
    assert capsys.readouterr().out.strip() == "{'loss': 0.2779}"
