"""The InfoNCE term: pooling, the loss against a loop-by-loop reference, noise, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from ner_adapters.cllmfs.contrastive import contrastive_loss, info_nce, perturb, pool_spans


def test_pool_spans_is_the_mean_of_each_range():
    hidden = torch.randn(2, 7, 5)
    batch, starts, ends = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 6]), torch.tensor([4, 2, 7])
    pooled = pool_spans(hidden, batch, starts, ends)
    expected = torch.stack([hidden[0, 1:4].mean(0), hidden[1, 0:2].mean(0), hidden[1, 6:7].mean(0)])
    assert torch.allclose(pooled, expected, atol=1e-6)


def reference_info_nce(anchors, positives, negatives, pair_of, tau):
    losses = []
    for i in range(len(anchors)):
        pos = F.cosine_similarity(anchors[i], positives[i], dim=0) / tau
        negs = [F.cosine_similarity(anchors[i], negatives[j], dim=0) / tau for j in range(len(negatives)) if pair_of[j] == i]
        losses.append(-pos + torch.logsumexp(torch.stack([pos, *negs]), dim=0))
    return torch.stack(losses).mean()


def test_info_nce_matches_the_textbook_formula():
    torch.manual_seed(0)
    anchors, positives, negatives = torch.randn(3, 8), torch.randn(3, 8), torch.randn(7, 8)
    pair_of = torch.tensor([2, 0, 0, 1, 2, 2, 0])  # unsorted, uneven counts
    ours = info_nce(anchors, positives, negatives, pair_of, 0.1)
    assert torch.allclose(ours, reference_info_nce(anchors, positives, negatives, pair_of, 0.1), atol=1e-5)


def test_loss_is_low_when_anchor_matches_positive_and_not_negatives():
    anchor = torch.tensor([[1.0, 0.0]])
    aligned = info_nce(anchor, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 0.1)
    swapped = info_nce(anchor, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 0.1)
    assert aligned < 0.01 < 9 < swapped
    assert math.isclose(float(swapped), 10 + math.log1p(math.exp(-10)), rel_tol=1e-4)


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_perturbation_has_the_requested_relative_norm(kind):
    z = torch.randn(4, 16)
    delta = perturb(z, 0.1, kind) - z
    assert torch.allclose(delta.norm(dim=-1), 0.1 * z.norm(dim=-1), rtol=1e-4)
    if kind == "uniform":
        assert torch.all(delta * z >= 0)  # SimGCL: the noise stays in z's orthant
    with pytest.raises(ValueError):
        perturb(z, 0.1, "laplace")


def test_batch_loss_gradients_and_noise():
    torch.manual_seed(0)
    hidden = torch.randn(2, 10, 6, requires_grad=True)
    pairs = torch.tensor([[0, 1, 2, 5, 7], [1, 0, 1, 3, 4]])
    negatives = torch.tensor([[0, 4, 7], [0, 5, 8], [1, 2, 4], [1, 4, 6]])
    loss = contrastive_loss(hidden, pairs, negatives, temperature=0.1)
    loss.backward()
    assert loss > 0 and hidden.grad[:, 9].abs().sum() == 0 and hidden.grad[0, 1].abs().sum() > 0
    noisy = contrastive_loss(hidden.detach(), pairs, negatives, temperature=0.1, noise_scale=0.5)
    assert not torch.isclose(noisy, loss.detach())
    empty = contrastive_loss(hidden, torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad
