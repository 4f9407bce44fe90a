"""span_f1: span-level NER precision, recall and F1 (micro, macro, per type) for `evaluate`.

Loads offline from its folder: ``evaluate.load(ner_adapters.metrics.METRIC_MODULE)`` or
``ner_adapters.metrics.load_metric()``. A drop-in for ``seqeval`` (same inputs, same ``overall_*`` and
per-type keys, scores identical to seqeval's strict IOB2 mode), plus macro averages.
"""

import datasets
import evaluate

from ner_adapters.metrics import sequence_scores

_DESCRIPTION = """Span-level (exact type and boundaries) NER scores on IOB2 tag sequences, computed by
ner_adapters.metrics.sequence_scores. mode="drop" matches seqeval strict IOB2; mode="repair" matches
seqeval's default conlleval-style reading of ill-formed I- tags."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted tag sequences (list of list of str).
    references: list of gold tag sequences (list of list of str).
    scheme: tag scheme of both ("IOB2" by default; IOB1, IOBES, BILOU also read).
    mode: "drop" (default, seqeval strict) or "repair" (seqeval default).
Returns:
    overall_precision, overall_recall, overall_f1, overall_accuracy (token accuracy), macro_precision,
    macro_recall, macro_f1, and for each type a dict with precision, recall, f1 and number (gold count).
Examples:
    >>> metric = ner_adapters.metrics.load_metric()
    >>> metric.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["overall_f1"]
    1.0
"""

_CITATION = """@inproceedings{ramshaw-marcus-1995-text, title={Text Chunking using Transformation-Based Learning},
author={Ramshaw, Lance and Marcus, Mitch}, booktitle={Third Workshop on Very Large Corpora}, year={1995}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpanF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                }
            ),
        )

    def _compute(self, predictions, references, scheme="IOB2", mode="drop"):
        scores = sequence_scores(references, predictions, scheme=scheme, mode=mode)
        result = {
            entity_type: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "number": s.gold}
            for entity_type, s in scores.per_type.items()
        }
        tokens = sum(len(r) for r in references)
        correct = sum(p == g for pred, ref in zip(predictions, references) for p, g in zip(pred, ref))
        result.update(
            overall_precision=scores.micro.precision,
            overall_recall=scores.micro.recall,
            overall_f1=scores.micro.f1,
            overall_accuracy=correct / tokens if tokens else 0.0,
            macro_precision=scores.macro_precision,
            macro_recall=scores.macro_recall,
            macro_f1=scores.macro_f1,
        )
        return result
