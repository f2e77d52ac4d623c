"""Chapter 3's exercises: the chapter's own solutions pass, typical mistakes fail with a helpful message."""
import math
from pathlib import Path

import jupytext
import pytest
import torch
import torch.nn.functional as F

from lmlib.exercises import ExerciseFailed, all_exercises, check
from lmlib.exercises.ch03 import ref_cross_entropy, ref_nearest_neighbours
from lmlib.lm.neural import bits_per_char, mlp_forward
from exercise_support import chapter_exercise_tests, failure

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "03_neural_language_models.md"
IDS = ["ch03.cross_entropy", "ch03.mlp_forward", "ch03.bits_per_char", "ch03.nearest_neighbours"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=8))


@pytest.mark.parametrize("id, ref", [("ch03.cross_entropy", ref_cross_entropy), ("ch03.mlp_forward", mlp_forward),
                                     ("ch03.bits_per_char", bits_per_char),
                                     ("ch03.nearest_neighbours", ref_nearest_neighbours)])
def test_the_reference_passes(id, ref):
    assert check(id, ref, quiet=True).ok


# ---------------------------------------------------------------- cross_entropy


def test_cross_entropy_without_the_max_trick_fails_on_huge_logits():
    def naive(logits, targets):
        p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
        return -torch.log(p[torch.arange(len(targets)), targets]).mean().item()

    msg = failure("ch03.cross_entropy", naive)
    assert "on huge logits" in msg and "subtract each row's maximum first" in msg


def test_cross_entropy_mistakes_are_named():
    msg = failure("ch03.cross_entropy", lambda l, t: F.cross_entropy(l, t, reduction="none"))
    assert "did you forget to average?" in msg
    msg = failure("ch03.cross_entropy", lambda l, t: -F.cross_entropy(l, t).item())
    assert "never negative" in msg
    msg = failure("ch03.cross_entropy", lambda l, t: F.cross_entropy(l, t).item() / math.log(2))  # bits
    assert "uniform logits over 4 tokens" in msg and "expected 1.386" in msg


# ---------------------------------------------------------------- mlp_forward


def test_mlp_forward_mistakes_are_named():
    def interleaved(idx, wte, W1, b1, W2, b2):  # concatenates the embedding coordinates in the wrong order
        B, n = idx.shape
        return torch.tanh(wte[idx].transpose(1, 2).reshape(B, -1) @ W1 + b1) @ W2 + b2

    msg = failure("ch03.mlp_forward", interleaved)
    assert "wrong values" in msg and "order of the concatenation" in msg

    def no_tanh(idx, wte, W1, b1, W2, b2):
        return (wte[idx].reshape(len(idx), -1) @ W1 + b1) @ W2 + b2

    assert "wrong values" in failure("ch03.mlp_forward", no_tanh)

    def hidden_only(idx, wte, W1, b1, W2, b2):
        return torch.tanh(wte[idx].reshape(len(idx), -1) @ W1 + b1)

    assert "wrong shape: got (2, 4), expected (B, V) = (2, 5)" in failure("ch03.mlp_forward", hidden_only)
    assert "expected a torch.Tensor" in failure("ch03.mlp_forward", lambda *a: mlp_forward(*a).tolist())


# ---------------------------------------------------------------- bits_per_char


def test_bits_per_char_mistakes_are_named():
    assert "divide by ln 2 to get bits" in failure("ch03.bits_per_char", lambda l, nt, nc: l * nt / nc)
    msg = failure("ch03.bits_per_char", lambda l, nt, nc: l / math.log(2))  # bits per token
    assert "BPE tokens of 2.5 characters each" in msg and "spread it over n_chars" in msg
    assert "spread it over n_chars" in failure("ch03.bits_per_char", lambda l, nt, nc: l * nc / nt / math.log(2))


# ---------------------------------------------------------------- nearest_neighbours


def test_nearest_neighbours_mistakes_are_named():
    def dot_product(emb, query, k):
        sims = emb @ emb[query]
        sims[query] = -math.inf
        return torch.topk(sims, k).indices

    msg = failure("ch03.nearest_neighbours", dot_product)
    assert "vectors of very different lengths" in msg and "got rows [3, 1], expected [1, 2]" in msg

    def includes_itself(emb, query, k):
        unit = emb / emb.norm(dim=1, keepdim=True)
        return torch.topk(unit @ unit[query], k).indices

    assert "got rows [0, 1], expected [1, 2] (most similar first, the query itself excluded)" in failure(
        "ch03.nearest_neighbours", includes_itself)

    def similarities(emb, query, k):
        unit = emb / emb.norm(dim=1, keepdim=True)
        sims = unit @ unit[query]
        sims[query] = -math.inf
        return torch.topk(sims, k).values

    assert "return the indices, not the similarities" in failure("ch03.nearest_neighbours", similarities)


def test_nearest_neighbours_accepts_a_list():
    assert check("ch03.nearest_neighbours", lambda e, q, k: ref_nearest_neighbours(e, q, k).tolist(), quiet=True).ok
