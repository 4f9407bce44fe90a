"""A logits processor that makes an untrained CLLMFS model give a chosen answer (tests only).

Untrained models answer at random, which would leave "the offsets are right" checks with nothing to check.
"""

from __future__ import annotations

import re

from ner_adapters.cllmfs.constrained import vocabulary_trie
from ner_adapters.cllmfs.extraction import word_boundaries


class ScriptedAnswers:
    """A logits processor that pushes each row towards a chosen answer: every word-aligned occurrence of the
    scripted strings of the prompt's type, in reading order. It runs *before* the substring constraint, so the
    constraint still decides what is allowed; a scripted answer it refused would come out differently."""

    def __init__(self, tokenizer, script: dict[str, list[str]]):
        self.tokenizer, self.script = tokenizer, script
        self.pieces = vocabulary_trie(tokenizer).token_bytes
        self.targets: list[list[int]] | None = None
        self.prompt_length = 0

    def answer_for(self, prompt: str) -> str:
        chunk = prompt.split("\nSentence: ", 1)[1].rsplit("\nassistant\n", 1)[0]
        one = re.search(r"Please extract the (.+?) in the sentence given below", prompt)
        if "of each of the following types" in prompt:  # all types in one prompt: a " Name:" slot per type
            names = re.findall(r"(?:: |; )([^;:()]+?) \(the entity of", prompt.split("\nSentence: ", 1)[0])
            return ";".join(f" {name}:" + self.entities_in(chunk, name) for name in names)
        return self.entities_in(chunk, one.group(1))

    def entities_in(self, chunk: str, name: str) -> str:
        starts = {s for s, _ in word_boundaries(chunk)}
        ends = {e for _, e in word_boundaries(chunk)}
        found = []
        for string in self.script.get(name, []):
            position = chunk.find(string)
            while position >= 0:
                if position in starts and position + len(string) in ends:
                    found.append((position, position + len(string)))
                position = chunk.find(string, position + 1)
        chosen, cursor = [], 0
        for start, end in sorted(found):
            if start >= cursor:
                chosen.append(chunk[start:end])
                cursor = end
        return "".join(f" <<< {s} >>>" for s in chosen) if chosen else " none"

    def keep(self, rows):
        """The decoder dropped finished rows: follow the remaining ones."""
        self.targets = [self.targets[row] for row in rows]

    def __call__(self, input_ids, scores):
        if self.targets is None:
            self.prompt_length = input_ids.shape[1]
            self.targets = []
            for row in input_ids.tolist():
                prompt = b"".join(self.pieces[i] or b"" for i in row).decode("utf-8", errors="replace")
                ids = self.tokenizer(self.answer_for(prompt), add_special_tokens=False)["input_ids"]
                self.targets.append(ids + [self.tokenizer.eos_token_id])
        step = input_ids.shape[1] - self.prompt_length
        for row, target in enumerate(self.targets):
            if step < len(target):
                scores[row, target[step]] += 1e4
        return scores


def scripted_occurrences(text: str, script: dict[str, list[str]], types) -> set[tuple[str, int, int]]:
    """``(label, start, end)`` of every word-aligned occurrence of each type's scripted strings in ``text``:
    what a scripted extraction must return (types are matched by their display name, as the prompts say them)."""
    words = word_boundaries(text)
    starts, ends = {s for s, _ in words}, {e for _, e in words}
    found = set()
    for entity_type in types:
        for string in script.get(entity_type.name, []):
            position = text.find(string)
            while position >= 0:
                if position in starts and position + len(string) in ends:
                    found.add((entity_type.label, position, position + len(string)))
                position = text.find(string, position + 1)
    return found
