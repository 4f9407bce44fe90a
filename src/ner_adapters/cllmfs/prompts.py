"""The CLLMFS instruction and answer format, shared by the SFT data, the decoder constraint and the parser.

Per type (the paper): the instruction "Please extract the <Type> in the sentence given below, the entity
of <type> refers to <description>.", the sentence, and the answer "I can extract entities for you, the
extracted entities are <<< e1 >>> <<< e2 >>>" between ``<im_start>`` and ``<im_end>``. With a chat
template (SmolLM2's ``<|im_start|>``/``<|im_end|>``) the template supplies those markers around the
assistant turn; without one they are written literally, as in the paper.

All types at once (beyond the paper): one instruction listing the N types and one answer with a
``<Type>:`` slot per type, so a sentence needs one generation instead of N.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from .entity_types import EntityType

PromptMode = Literal["per_type", "all_types"]

INSTRUCTION = "Please extract the {name} in the sentence given below, the entity of {lower} refers to {description}."
ALL_TYPES_INSTRUCTION = (
    "Please extract the entities of each of the following types in the sentence given below: {definitions}. "
    "Answer with every type in this order."
)
DEFINITION = "{name} (the entity of {lower} refers to {description})"
SENTENCE_HEADER = "\nSentence: "
ANSWER_PREFIX = "I can extract entities for you, the extracted entities are"
OPEN = " <<< "
CLOSE = " >>>"
NONE = " none"
SLOT_SEPARATOR = ";"
FORMAT_HINT = (
    " Answer with \"" + ANSWER_PREFIX + "\" followed by each entity copied from the sentence as <<< entity >>>, "
    "or by none if there is no such entity."
)
LITERAL_START = "<im_start> "
LITERAL_STOP = " <im_end>"


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt with the character positions the contrastive loss needs.

    ``type_spans[i]`` is where type ``i``'s name sits in ``text``; ``sentence_offset`` where the sentence
    starts, so a character offset in the sentence plus it is an offset in ``text``.
    """

    text: str
    type_spans: tuple[tuple[int, int], ...]
    sentence_offset: int


class PromptFormat:
    """Builds prompts and answers for one tokenizer (chat template or literal markers) and one mode."""

    def __init__(
        self, tokenizer, mode: PromptMode = "per_type", system_prompt: str | None = None, format_hint: bool = False
    ):
        """``format_hint`` spells the answer format out in the instruction: an untrained model (the zero-shot
        baseline) cannot know it otherwise; a CLLMFS-tuned one learns it from the SFT data, as in the paper."""
        if mode not in ("per_type", "all_types"):
            raise ValueError(f"prompt mode must be 'per_type' or 'all_types', got {mode!r}")
        self.tokenizer = tokenizer
        self.mode = mode
        self.system_prompt = system_prompt
        self.format_hint = format_hint
        self.uses_chat_template = getattr(tokenizer, "chat_template", None) is not None
        self.answer_prefix = ANSWER_PREFIX if self.uses_chat_template else LITERAL_START + ANSWER_PREFIX
        # With a chat template the model stops with its end-of-turn token; otherwise with the literal marker.
        self.stop_text = None if self.uses_chat_template else LITERAL_STOP

    # --- prompts ---------------------------------------------------------------------------------

    def groups(self, types: Sequence[EntityType]) -> list[list[EntityType]]:
        """The type groups that each get one prompt: one per type, or all types together."""
        return [[t] for t in types] if self.mode == "per_type" else [list(types)]

    def user_content(self, sentence: str, types: Sequence[EntityType]) -> tuple[str, list[tuple[int, int]], int]:
        """The user message, where each type's name is in it, and where the sentence starts."""
        spans: list[tuple[int, int]] = []
        if len(types) == 1 and self.mode == "per_type":
            t = types[0]
            instruction = INSTRUCTION.format(name=t.name, lower=t.name.lower(), description=t.description)
            start = instruction.index(t.name)
            spans.append((start, start + len(t.name)))
        else:
            head, _, tail = ALL_TYPES_INSTRUCTION.partition("{definitions}")
            parts = []
            position = len(head)
            for t in types:
                definition = DEFINITION.format(name=t.name, lower=t.name.lower(), description=t.description)
                spans.append((position, position + len(t.name)))
                parts.append(definition)
                position += len(definition) + 2
            instruction = head + "; ".join(parts) + tail
        if self.format_hint:
            instruction += FORMAT_HINT
        content = instruction + SENTENCE_HEADER + sentence
        return content, spans, len(instruction) + len(SENTENCE_HEADER)

    def build(self, sentence: str, types: Sequence[EntityType]) -> Prompt:
        content, spans, sentence_start = self.user_content(sentence, types)
        if self.uses_chat_template:
            messages = [{"role": "user", "content": content}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            offset = text.rindex(content)
        else:
            text, offset = content + "\n", 0
        return Prompt(text, tuple((offset + s, offset + e) for s, e in spans), offset + sentence_start)

    # --- answers ---------------------------------------------------------------------------------

    def slot_labels(self, types: Sequence[EntityType]) -> list[str | None]:
        """The literal that opens each answer slot: none per type, ``" Person:"``-style for all types."""
        if self.mode == "per_type":
            return [None]
        return [("" if i == 0 else SLOT_SEPARATOR) + f" {t.name}:" for i, t in enumerate(types)]

    def answer(self, entities: Sequence[Sequence[str]], types: Sequence[EntityType]) -> str:
        """The completion for gold entity strings per type (in sentence order), ending with the stop marker."""
        labels = self.slot_labels(types)
        if len(entities) != len(labels):
            raise ValueError(f"{len(entities)} entity lists for {len(labels)} answer slots")
        text = self.answer_prefix
        for label, strings in zip(labels, entities):
            text += label or ""
            text += "".join(OPEN + s + CLOSE for s in strings) if strings else NONE
        return text + (self.stop_text if self.stop_text is not None else self.tokenizer.eos_token)

    def parse(self, completion: str, types: Sequence[EntityType]) -> list[list[tuple[str, int, int]]]:
        """Entity strings per type, with their character range in ``completion``.

        Lenient, since unconstrained output may stray: text after a stop marker is ignored and a missing
        slot label leaves its type empty.
        """
        end = len(completion)
        for marker in (self.tokenizer.eos_token or "", LITERAL_STOP.strip()):
            if marker and marker in completion:
                end = min(end, completion.index(marker))
        labels = self.slot_labels(types)
        if labels == [None]:
            return [_entities(completion, 0, end)]
        positions = [completion.find(label.lstrip(SLOT_SEPARATOR).strip(), 0, end) for label in labels]
        result = []
        for i, start in enumerate(positions):
            following = [p for p in positions[i + 1 :] if p > start]
            result.append(_entities(completion, start, min(following) if following else end) if start >= 0 else [])
        return result


_ENTITY = re.compile(r"<<< ?(.*?) ?>>>", re.DOTALL)


def _entities(text: str, start: int, end: int) -> list[tuple[str, int, int]]:
    return [(m.group(1), m.start(1), m.end(1)) for m in _ENTITY.finditer(text, start, end) if m.group(1).strip()]
