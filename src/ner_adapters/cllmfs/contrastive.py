"""The CLLMFS contrastive term: InfoNCE between type-name anchors and entity spans on one hidden layer.

For every gold entity: the anchor is the mean hidden state of the type name's tokens in the instruction,
the positive the mean state of the entity's tokens in the sentence, the negatives its neighbouring
spans (wrong boundaries, context words). With noise, a perturbed copy ``z' = z + delta`` of the positive
is a second positive (the paper's representation-level augmentation, after Yu et al.'s SimGCL).

    L_CL = mean over pairs of  -log( exp(s(a, p)/tau) / (exp(s(a, p)/tau) + sum_n exp(s(a, n)/tau)) )

with ``s`` the cosine similarity. The positive is in the denominator as in standard InfoNCE (van den
Oord et al.), which keeps the loss non-negative; the paper's Eq. 3 prints only the negatives there.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

NoiseKind = Literal["uniform", "gaussian"]


def pool_spans(hidden: torch.Tensor, batch_index: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden[b, start:end]`` for each range, via a prefix sum (one pass, no Python loop)."""
    prefix = F.pad(hidden.float().cumsum(dim=1), (0, 0, 1, 0))  # (B, T+1, H), prefix[:, t] = sum of first t
    sums = prefix[batch_index, ends] - prefix[batch_index, starts]
    return sums / (ends - starts).clamp(min=1).unsqueeze(-1).to(sums.dtype)


def perturb(z: torch.Tensor, scale: float, kind: NoiseKind = "uniform") -> torch.Tensor:
    """``z + delta`` with ``||delta|| = scale * ||z||``.

    ``uniform`` follows SimGCL: ``delta`` points along ``sign(z)`` times uniform noise, so it stays in
    ``z``'s orthant (a small rotation, not a flip); ``gaussian`` is isotropic.
    """
    if kind == "uniform":
        direction = torch.rand_like(z) * torch.sign(z)
    elif kind == "gaussian":
        direction = torch.randn_like(z)
    else:
        raise ValueError(f"noise kind must be 'uniform' or 'gaussian', got {kind!r}")
    return z + scale * z.norm(dim=-1, keepdim=True) * F.normalize(direction, dim=-1)


def info_nce(
    anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, negative_pair: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean InfoNCE over pairs; ``negatives[j]`` belongs to pair ``negative_pair[j]``."""
    n_pairs = anchors.shape[0]
    anchors, positives, negatives = (F.normalize(x, dim=-1) for x in (anchors, positives, negatives))
    positive_logit = (anchors * positives).sum(-1) / temperature  # (P,)
    negative_logit = (anchors[negative_pair] * negatives).sum(-1) / temperature  # (N,)
    # Scatter the negatives into a (P, max_negatives) table padded with -inf, then one logsumexp.
    counts = torch.bincount(negative_pair, minlength=n_pairs)
    order = torch.argsort(negative_pair, stable=True)
    slot = torch.arange(negative_pair.numel(), device=anchors.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    table = positive_logit.new_full((n_pairs, int(counts.max().item()) + 1), float("-inf"))
    table[:, 0] = positive_logit
    table[negative_pair[order], slot + 1] = negative_logit[order]
    return (torch.logsumexp(table, dim=1) - positive_logit).mean()


def contrastive_loss(
    hidden: torch.Tensor,
    pairs: torch.Tensor,
    negatives: torch.Tensor,
    *,
    temperature: float = 0.1,
    noise_scale: float = 0.0,
    noise_kind: NoiseKind = "uniform",
) -> torch.Tensor:
    """The CLLMFS contrastive loss of one batch.

    Args:
        hidden: ``(B, T, H)`` hidden states of the chosen layer.
        pairs: ``(P, 5)`` rows ``[batch, anchor_start, anchor_end, positive_start, positive_end]``.
        negatives: ``(N, 3)`` rows ``[pair, start, end]``.
        noise_scale: relative size of the noise on a second, perturbed positive; 0 disables it.
    """
    if pairs.numel() == 0 or negatives.numel() == 0:
        return hidden.new_zeros(()) * hidden.sum()  # keeps the graph connected when a batch has no entity
    batch = pairs[:, 0]
    anchors = pool_spans(hidden, batch, pairs[:, 1], pairs[:, 2])
    positives = pool_spans(hidden, batch, pairs[:, 3], pairs[:, 4])
    negative_pair = negatives[:, 0]
    negative_states = pool_spans(hidden, batch[negative_pair], negatives[:, 1], negatives[:, 2])
    loss = info_nce(anchors, positives, negative_states, negative_pair, temperature)
    if noise_scale > 0:
        noisy = perturb(positives, noise_scale, noise_kind)
        loss = (loss + info_nce(anchors, noisy, negative_states, negative_pair, temperature)) / 2
    return loss
