"""Batched decoding: prompts prefilled in batches of similar lengths, decoded together, each row taken out of
the batch as soon as its answer ends.

``model.generate`` keeps a batch together until its longest answer ends: of 32 per-type prompts, most answer
"none" in two tokens, and one that lists entities for forty tokens makes all 32 rows run forty steps. This loop
drops a finished row (and its key/value cache) at once, so a batch costs the steps its answers need, with the
rows still open decoded together. It is greedy or samples with temperature and top-p, like the extractor's
``DecodingConfig``, applies logits processors (the substring constraint, or any ``transformers``
``LogitsProcessor``) and records each chosen token's log-probability under the unprocessed model (the entity
scores).

Positions come from the attention mask as in ``generate`` (left padding, and the padding gap a prefix cache
leaves inside a row), so every row decodes as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class DecodedRow:
    """One row's answer: its tokens (a stop token included, when it stopped on one) and their log-probabilities."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stopped: bool = False


@dataclass
class Prefilled:
    """Prompts run through the model, ready to decode: their ids, cache, attention mask and next-token logits."""

    input_ids: torch.Tensor  # (rows, columns): the prompts, left-padded (what logits processors read)
    past: object  # transformers DynamicCache of every column
    mask: torch.Tensor  # (rows, columns)
    logits: torch.Tensor  # (rows, vocabulary)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _sampler(do_sample: bool, temperature: float, top_p: float):
    if not do_sample:
        return lambda scores: scores.argmax(dim=-1)
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])

    def sample(scores: torch.Tensor) -> torch.Tensor:
        for warp in warpers:
            scores = warp(None, scores)
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    return sample


@torch.no_grad()
def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, past_key_values=None) -> Prefilled:
    """Run a left-padded batch of prompts (after the columns ``past_key_values`` already holds)."""
    cached = past_key_values.get_seq_length() if past_key_values is not None else 0
    out = model(input_ids=input_ids[:, cached:], attention_mask=attention_mask,
                position_ids=_positions(attention_mask)[:, cached:], past_key_values=past_key_values, use_cache=True,
                logits_to_keep=1)
    return Prefilled(input_ids, out.past_key_values, attention_mask, out.logits[:, -1, :])


def merge(parts: Sequence[Prefilled], pad_token_id: int = 0) -> Prefilled:
    """One batch from several prefilled ones, each left-padded (masked) to the longest.

    Prompts are prefilled in small batches of similar lengths (little padding, where padding costs a full
    forward per position) and decoded together (one forward per step for all of them, where a step costs
    about the same for 8 rows as for 64)."""
    from transformers import DynamicCache

    if len(parts) == 1:
        return parts[0]
    length = max(part.mask.shape[1] for part in parts)

    def lead(tensor: torch.Tensor, value=0) -> torch.Tensor:  # left-pad the column axis (dim -1 or, for KV, -2)
        return torch.nn.functional.pad(tensor, (length - tensor.shape[-1], 0), value=value)

    past = DynamicCache()
    for index in range(len(parts[0].past.layers)):
        keys, values = [], []
        for part in parts:
            layer = part.past.layers[index]
            missing = length - layer.keys.shape[2]
            keys.append(torch.nn.functional.pad(layer.keys, (0, 0, missing, 0)))
            values.append(torch.nn.functional.pad(layer.values, (0, 0, missing, 0)))
        past.update(torch.cat(keys), torch.cat(values), index)
    return Prefilled(torch.cat([lead(part.input_ids, pad_token_id) for part in parts]), past,
                     torch.cat([lead(part.mask) for part in parts]), torch.cat([part.logits for part in parts]))


@torch.no_grad()
def decode(
    model,
    state: Prefilled,
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    processors: Sequence = (),
    stop_bytes: bytes | None = None,
    token_bytes: Sequence[bytes | None] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[DecodedRow]:
    """Answers of prefilled prompts, one ``DecodedRow`` per row.

    ``processors`` are ``LogitsProcessor``-like callables ``(input_ids, scores) -> scores``, applied in order;
    ``input_ids`` are the rows' prompts and answers so far. A row ends at a token of ``stop_ids``, when its text
    contains ``stop_bytes`` (spelt with ``token_bytes``), when a processor's ``ends_after(row, token)`` says
    only a stop can follow (the stop is appended without running the step that would predict it; its
    log-probability is NaN), or after ``max_new_tokens``. A finished row leaves the batch, cache included, when
    every processor can follow that (has a ``keep(rows)`` method, as ``SubstringConstraint``); otherwise the
    batch stays whole, as in ``generate``.
    """
    if stop_bytes is not None and token_bytes is None:
        raise ValueError("stop_bytes needs token_bytes to spell the answers")
    rows = [DecodedRow() for _ in range(state.logits.shape[0])]
    if max_new_tokens <= 0 or not rows:
        return rows
    device = state.logits.device
    stops = torch.tensor(sorted(set(stop_ids)), device=device)
    choose = _sampler(do_sample, temperature, top_p)
    shrink = all(hasattr(p, "keep") for p in processors)
    enders = [p for p in processors if hasattr(p, "ends_after")]
    past, mask, logits, sequences = state.past, state.mask, state.logits, state.input_ids
    batch = list(range(len(rows)))  # original row index of each batch row
    done = [False] * len(rows)
    spelt = [b""] * len(rows)
    for step in range(max_new_tokens):
        scores = logits.float()
        logprobs = torch.log_softmax(scores, dim=-1)
        for processor in processors:
            scores = processor(sequences, scores)
        tokens = choose(scores)
        chosen = logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
        ended = torch.isin(tokens, stops).tolist()
        for position, (row, token, logprob) in enumerate(zip(batch, tokens.tolist(), chosen)):
            if done[row]:  # a finished row kept in the batch: its tokens are ignored
                continue
            rows[row].token_ids.append(token)
            rows[row].logprobs.append(logprob)
            if stop_bytes is not None and not ended[position]:
                spelt[row] += (token_bytes[token] if token < len(token_bytes) else None) or b""
                ended[position] = stop_bytes in spelt[row]
            if not ended[position] and any(p.ends_after(position, token) for p in enders):
                rows[row].token_ids.append(stop_ids[0])  # nothing else could come: no step to predict it
                rows[row].logprobs.append(float("nan"))
                ended[position] = True
            rows[row].stopped = done[row] = ended[position]
        if all(done) or step + 1 == max_new_tokens:
            break
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        keep = [position for position, row in enumerate(batch) if not done[row]]
        if shrink and len(keep) < len(batch):  # finished rows leave the batch, cache included
            index = torch.tensor(keep, device=device)
            past.batch_select_indices(index)
            mask, tokens, sequences = mask[index], tokens[index], sequences[index]
            for processor in processors:
                processor.keep(keep)
            batch = [batch[position] for position in keep]
        mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :]
    return rows


def decode_batch(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, past_key_values=None,
                 **kwargs) -> list[DecodedRow]:
    """``decode`` of one left-padded batch (``past_key_values``: the cache of its first columns, if any)."""
    return decode(model, prefill(model, input_ids, attention_mask, past_key_values), **kwargs)
