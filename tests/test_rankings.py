"""K-wise rankings (InstructGPT): every ordered pair of one prompt's answers, averaged per prompt."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlib import preferences as P


def _loop_loss(scores, ranks, mask):
    """The loss written out as a double loop over the pairs of every prompt: the reference."""
    per_prompt, correct, total = [], 0, 0
    for b in range(scores.shape[0]):
        real = [k for k in range(scores.shape[1]) if mask[b, k]]
        terms = []
        for i, j in itertools.combinations(real, 2):
            if ranks[b, i] == ranks[b, j]:
                continue
            w, l = (i, j) if ranks[b, i] > ranks[b, j] else (j, i)
            terms.append(-F.logsigmoid(scores[b, w] - scores[b, l]))
            correct += int(scores[b, w] > scores[b, l])
            total += 1
        per_prompt.append(torch.stack(terms).mean())
    return torch.stack(per_prompt).mean(), correct / total, total


def test_golden_value():
    loss, diag = P.ranking_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2, 1, 0]]))
    # pairs (2,1), (2,0), (1,0): differences 1, 2, 1 -> (2·softplus(-1) + softplus(-2)) / 3
    assert loss.item() == pytest.approx(0.251150, abs=1e-6)
    assert loss.item() == pytest.approx((2 * math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 3, rel=1e-6)
    assert diag == {"accuracy": 1.0, "margin": pytest.approx(4 / 3), "pairs": 3.0}


@pytest.mark.parametrize("seed", range(5))
def test_equals_a_double_loop_on_random_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    B, K = 6, 5
    scores = torch.randn(B, K, generator=g, dtype=torch.float64)
    ranks = torch.randint(0, 3, (B, K), generator=g)  # few rank levels: many ties
    mask = torch.rand(B, K, generator=g) < 0.8
    for b in range(B):  # every prompt keeps at least two real answers of different rank
        mask[b, :2] = True
        ranks[b, 0], ranks[b, 1] = 2, 0
    scores_padded = scores.masked_fill(~mask, float("nan"))  # padding may hold anything
    loss, diag = P.ranking_loss(scores_padded, ranks, mask)
    ref, acc, n = _loop_loss(scores, ranks, mask)
    torch.testing.assert_close(loss, ref)
    assert diag["accuracy"] == pytest.approx(acc) and diag["pairs"] == n
    # The gradient agrees too (and no NaN leaks from the padding).
    s1 = scores.clone().requires_grad_(True)
    P.ranking_loss(torch.where(mask, s1, torch.full_like(s1, float("nan"))), ranks, mask)[0].backward()
    s2 = scores.clone().requires_grad_(True)
    _loop_loss(s2, ranks, mask)[0].backward()
    torch.testing.assert_close(s1.grad, s2.grad)


def test_each_prompt_counts_once_whatever_its_number_of_answers():
    """One prompt with 4 answers (6 pairs) and one with 2 (1 pair) weigh the same: the mean of the two means."""
    scores = torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.3, 0.0, 0.0, 0.0]])
    ranks = torch.tensor([[3, 2, 0, 1], [0, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    loss, _ = P.ranking_loss(scores, ranks, mask)
    first, _ = P.ranking_loss(scores[:1], ranks[:1])
    second, _ = P.ranking_loss(scores[1:, :2], ranks[1:, :2])
    torch.testing.assert_close(loss, (first + second) / 2)


def test_two_answers_is_the_bradley_terry_loss_without_noise():
    s = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    loss, _ = P.ranking_loss(s, torch.tensor([[1, 0]] * 7))
    bt, _ = P.preference_loss(s[:, :1], s[:, 1:], torch.ones(7), epsilon=0.0)
    torch.testing.assert_close(loss, bt)


def test_errors_are_clear():
    s, r = torch.zeros(2, 3), torch.tensor([[2, 1, 0], [0, 1, 2]])
    with pytest.raises(ValueError, match=r"scores must be a float tensor \(B, K\).*got \(3,\)"):
        P.ranking_loss(torch.zeros(3), r[0])
    with pytest.raises(ValueError, match=r"ranks have shape \(2, 2\) but scores have shape \(2, 3\)"):
        P.ranking_loss(s, r[:, :2])
    with pytest.raises(ValueError, match="scores holds 1 non-finite"):
        P.ranking_loss(torch.tensor([[0.0, float("nan"), 1.0]]), r[:1])
    with pytest.raises(ValueError, match="ranks holds 1 non-finite"):
        P.ranking_loss(s[:1], torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"prompt\(s\) \[1\] have fewer than 2 ranked answers"):
        P.ranking_loss(s, r, torch.tensor([[1, 1, 1], [0, 1, 0]]))
    with pytest.raises(ValueError, match=r"prompt\(s\) \[0\] have all their answers tied"):
        P.ranking_loss(s, torch.tensor([[1, 1, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="mask has shape"):
        P.ranking_loss(s, r, torch.ones(2, 2))


def test_ranking_to_pairs_worked_example():
    assert P.ranking_to_pairs("abc", [0, 2, 1]) == [("b", "a"), ("c", "a"), ("b", "c")]
    assert P.ranking_to_pairs(["x", "y", "z"], [1, 1, 0]) == [("x", "z"), ("y", "z")]  # the tie makes no pair
    assert P.ranking_to_pairs(["x", "y"], [5, 5]) == []


def test_ranking_to_pairs_matches_the_loss_and_feeds_chapter_11():
    rng = np.random.default_rng(0)
    answers = [P.Segment(rng.integers(0, 5, size=int(rng.integers(2, 6)))) for _ in range(4)]
    ranks = [3, 0, 2, 1]
    pairs = P.ranking_to_pairs(answers, ranks)
    assert len(pairs) == math.comb(4, 2)
    ds = P.PreferenceDataset([P.PreferencePair(c, r) for c, r in pairs], ["left"] * len(pairs))  # chosen on the left
    assert len(ds) == 6
    scores = torch.tensor([[0.4, -1.0, 0.1, 2.0]])
    index = {id(a): k for k, a in enumerate(answers)}
    mean_pair = torch.stack([-F.logsigmoid(scores[0, index[id(c)]] - scores[0, index[id(r)]]) for c, r in pairs]).mean()
    torch.testing.assert_close(P.ranking_loss(scores, torch.tensor([ranks]))[0], mean_pair)


def test_ranking_to_pairs_errors():
    with pytest.raises(ValueError, match="3 items but 2 ranks"):
        P.ranking_to_pairs("abc", [1, 0])
    with pytest.raises(ValueError, match="at least 2 answers"):
        P.ranking_to_pairs(["a"], [1])
    with pytest.raises(ValueError, match="finite"):
        P.ranking_to_pairs("ab", [1, float("nan")])
