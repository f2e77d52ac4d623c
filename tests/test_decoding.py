"""lmlib.lm.decoding: logit processors, sampling/greedy/beam search on a tiny bigram table, diversity/quality metrics."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.lm import decoding as dec
from lmlib.exercises import ExerciseFailed, check

NEG_INF = float("-inf")
WORKED = torch.tensor([[2.0, 1.0, 0.0, -1.0]])


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


class Bigram:
    """A fixed bigram logit table as a "model": ids (B, T) -> logits (B, T, V), row = the current token."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


def random_table(V: int, seed: int, scale: float = 1.5) -> torch.Tensor:
    return torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * scale


def kept(x: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in ~torch.isneginf(x)]


# ----------------------------------------------------------------------------- processors: worked examples


def test_worked_softmax_values():
    assert torch.allclose(torch.softmax(WORKED, -1), torch.tensor([[0.6439, 0.2369, 0.0871, 0.0321]]), atol=1e-4)


def test_top_k_worked_example():
    assert kept(dec.top_k_filter(WORKED, 2)) == [[0, 1]]
    assert kept(dec.top_k_filter(WORKED, 1)) == [[0]]
    out = dec.top_k_filter(torch.tensor([[0.0, 3.0, 1.0], [5.0, -2.0, 4.0]]), 2)
    assert kept(out) == [[1, 2], [0, 2]]
    assert out[0, 1] == 3.0 and out[1, 2] == 4.0  # kept logits unchanged


def test_top_k_keeps_ties_and_handles_minus_inf():
    assert kept(dec.top_k_filter(torch.tensor([[1.0, 3.0, 3.0, 0.0]]), 1)) == [[1, 2]]
    assert kept(dec.top_k_filter(torch.tensor([[1.0, 3.0, 3.0, 0.0]]), 2)) == [[1, 2]]
    x = torch.tensor([[0.5, NEG_INF, 2.0, NEG_INF, 1.0]])
    assert torch.equal(dec.top_k_filter(x, 4), x)  # k beyond the finite logits: nothing more removed


def test_top_p_worked_example():
    # probabilities [0.6439, 0.2369, 0.0871, 0.0321]; cumulative [0.6439, 0.8808, 0.9679, 1]
    assert kept(dec.top_p_filter(WORKED, 0.7)) == [[0, 1]]
    assert kept(dec.top_p_filter(WORKED, 0.5)) == [[0]]
    assert kept(dec.top_p_filter(WORKED, 0.88)) == [[0, 1]]
    assert kept(dec.top_p_filter(WORKED, 0.89)) == [[0, 1, 2]]
    assert kept(dec.top_p_filter(WORKED, 1e-6)) == [[0]]  # always at least one token
    # unsorted rows, each with its own nucleus
    assert kept(dec.top_p_filter(torch.tensor([[-1.0, 2.0, 1.0, 0.0], [0.0, 0.0, 3.0, -5.0]]), 0.75)) == [[1, 2], [2]]


def test_top_p_ties_are_all_kept():
    # probabilities [0.134, 0.366, 0.366, 0.134]: the nucleus for p=0.5 is {1, 2} whatever the order of the tie
    assert kept(dec.top_p_filter(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), 0.5)) == [[1, 2]]
    assert kept(dec.top_p_filter(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), 0.3)) == [[1, 2]]  # token 1 alone would do
    # probabilities [0.711, 0.096, 0.096, 0.096]: p=0.9 is reached inside the tie, so all three tied tokens stay
    assert kept(dec.top_p_filter(torch.tensor([[2.0, 0.0, 0.0, 0.0]]), 0.9)) == [[0, 1, 2, 3]]
    assert kept(dec.top_p_filter(torch.zeros(1, 5), 0.3)) == [[0, 1, 2, 3, 4]]  # uniform: all tied


def test_identities():
    x = random_table(7, 0)
    assert torch.equal(dec.top_p_filter(x, 1.0), x)
    assert torch.equal(dec.top_k_filter(x, 7), x)
    assert torch.equal(dec.apply_temperature(x, 1.0), x)
    assert torch.equal(dec.repetition_penalty(x, torch.randint(0, 7, (7, 5)), 1.0), x)
    assert torch.equal(dec.repetition_penalty(x, torch.zeros(7, 0, dtype=torch.long), 3.0), x)


def test_processors_do_not_modify_their_input():
    x = random_table(6, 1)
    before = x.clone()
    dec.top_k_filter(x, 2), dec.top_p_filter(x, 0.5), dec.apply_temperature(x, 0.5)
    dec.repetition_penalty(x, torch.zeros(6, 2, dtype=torch.long), 2.0)
    assert torch.equal(x, before)


def test_temperature_is_dividing_the_logits():
    x = random_table(9, 2)
    for T in (0.1, 0.5, 1.0, 3.0):
        assert torch.allclose(torch.softmax(dec.apply_temperature(x, T), -1), torch.softmax(x / T, -1))
    assert torch.equal(dec.apply_temperature(WORKED, 0.5), torch.tensor([[4.0, 2.0, 0.0, -2.0]]))
    # T -> 0: one-hot on the argmax; T -> inf: uniform
    assert torch.allclose(torch.softmax(dec.apply_temperature(WORKED, 1e-3), -1), torch.tensor([[1.0, 0, 0, 0]]))
    assert torch.allclose(torch.softmax(dec.apply_temperature(WORKED, 1e4), -1), torch.full((1, 4), 0.25), atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=10), st.floats(0.05, 5), st.floats(0.05, 5))
def test_entropy_grows_with_temperature(row, t1, t2):
    x = torch.tensor([row], dtype=torch.float64)

    def entropy(T):
        p = torch.softmax(x / T, -1)
        return float(-(p * p.clamp_min(1e-300).log()).sum())

    lo, hi = sorted((t1, t2))
    assert entropy(lo) <= entropy(hi) + 1e-9


def test_repetition_penalty_worked_values():
    prev = torch.tensor([[0, 3, 3]])
    assert torch.equal(dec.repetition_penalty(WORKED, prev, 2.0), torch.tensor([[1.0, 1.0, 0.0, -2.0]]))
    assert torch.equal(dec.repetition_penalty(WORKED, prev, 0.5), torch.tensor([[4.0, 1.0, 0.0, -0.5]]))
    # per-row ids; a zero logit is unchanged
    x = torch.tensor([[1.0, 2.0, -1.0], [1.0, 0.0, -1.0]])
    out = dec.repetition_penalty(x, torch.tensor([[1, 2], [1, 1]]), 4.0)
    assert torch.equal(out, torch.tensor([[1.0, 0.5, -4.0], [1.0, 0.0, -1.0]]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 12), st.data())
def test_filters_properties(B, V, data):
    floats = st.floats(-8, 8, allow_nan=False, width=32)
    x = torch.tensor(data.draw(st.lists(st.lists(floats, min_size=V, max_size=V), min_size=B, max_size=B)))
    k = data.draw(st.integers(1, V))
    p = data.draw(st.floats(0.01, 1.0))
    for out in (dec.top_k_filter(x, k), dec.top_p_filter(x, p)):
        keep = ~torch.isneginf(out)
        assert torch.equal(out[keep], x[keep])  # kept logits unchanged
        probs = torch.softmax(out.double(), -1)
        assert torch.allclose(probs.sum(-1), torch.ones(B, dtype=torch.float64))  # still a distribution
        for r in range(B):  # every kept token is at least as likely as every removed one
            if (~keep[r]).any():
                assert x[r][keep[r]].min() >= x[r][~keep[r]].max()
    keep_k = ~torch.isneginf(dec.top_k_filter(x, k))
    assert (keep_k.sum(-1) >= k).all()
    for r in range(B):  # more than k kept only because of a tie with the k-th largest
        kth = torch.sort(x[r], descending=True).values[k - 1]
        assert int((x[r] > kth).sum()) < k and torch.equal(keep_k[r], x[r] >= kth)
    out = dec.top_p_filter(x, p)
    probs = torch.softmax(x.double(), -1)
    for r in range(B):
        keep = ~torch.isneginf(out[r])
        threshold = x[r][keep].min()
        assert float(probs[r][keep].sum()) >= p - 1e-5  # mass >= p ...
        assert float(probs[r][x[r] > threshold].sum()) < p + 1e-5  # ... and nothing smaller would do


def test_processor_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        dec.top_k_filter(WORKED, 0)
    with pytest.raises(ValueError, match="k must be <= the vocabulary size V=4"):
        dec.top_k_filter(WORKED, 5)
    with pytest.raises(TypeError, match="k must be an int"):
        dec.top_k_filter(WORKED, 1.5)
    for p in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
            dec.top_p_filter(WORKED, p)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="penalty must be a finite number > 0"):
            dec.repetition_penalty(WORKED, torch.tensor([[0]]), bad)
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            dec.apply_temperature(WORKED, bad)
    with pytest.raises(ValueError, match=r"shape \(B, V\).*add a batch dimension"):
        dec.top_k_filter(WORKED[0], 2)
    with pytest.raises(ValueError, match=r"shape \(B, V\)"):
        dec.top_p_filter(WORKED[None], 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        dec.apply_temperature(torch.tensor([[1, 2]]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        dec.top_k_filter(torch.tensor([[1.0, float("nan")]]), 1)
    with pytest.raises(ValueError, match="all -inf"):
        dec.top_p_filter(torch.tensor([[0.0, 1.0], [NEG_INF, NEG_INF]]), 0.5)
    with pytest.raises(ValueError, match=r"previous_ids has 2 rows but logits has 1"):
        dec.repetition_penalty(WORKED, torch.zeros(2, 3, dtype=torch.long), 2.0)
    with pytest.raises(ValueError, match=r"token ids in \[0, 4\)"):
        dec.repetition_penalty(WORKED, torch.tensor([[4]]), 2.0)
    with pytest.raises(TypeError, match="torch.long"):
        dec.repetition_penalty(WORKED, torch.tensor([[0.0]]), 2.0)


def test_next_token_distribution_order_and_greedy():
    prev = torch.tensor([[0]])
    # penalty first (2 -> 1, tie with token 1), then top-k=2 keeps both tied tokens 0 and 1, temperature 1
    probs = dec.next_token_distribution(WORKED, prev, temperature=1.0, top_k=2, repetition_penalty=2.0)
    assert torch.allclose(probs, torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert torch.equal(dec.next_token_distribution(WORKED, temperature=0), torch.tensor([[1.0, 0, 0, 0]]))
    probs = dec.next_token_distribution(WORKED, top_p=0.7)
    assert torch.allclose(probs, torch.tensor([[0.7311, 0.2689, 0, 0]]), atol=1e-4)
    with pytest.raises(ValueError, match="needs previous_ids"):
        dec.next_token_distribution(WORKED, repetition_penalty=1.5)


# ----------------------------------------------------------------------------- sampling and greedy


def test_sample_is_reproducible_with_a_seed_and_seeds_differ():
    model, idx = Bigram(random_table(8, 3, scale=0.5)), torch.tensor([[0], [1], [2], [3]])

    def run(seed, **kw):
        return dec.sample(model, idx, 30, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (4, 31) and a.dtype == torch.long and torch.equal(a[:, :1], idx)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(run(5, top_k=3, top_p=0.9, temperature=0.7), run(5, top_k=3, top_p=0.9, temperature=0.7))


def test_sample_draws_from_the_filtered_distribution():
    # One step from token 0 for 20,000 prompts: the frequencies match the top-k / top-p / temperature probabilities.
    table = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4])
    idx = torch.zeros(20_000, 1, dtype=torch.long)
    for kw, expected in [
        ({}, torch.softmax(WORKED[0], -1)),
        ({"top_k": 2}, torch.tensor([0.7311, 0.2689, 0, 0])),
        ({"top_p": 0.95}, torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1).tolist() + [0.0]),
        ({"temperature": 2.0}, torch.softmax(WORKED[0] / 2, -1)),
    ]:
        out = dec.sample(Bigram(table), idx, 1, generator=torch.Generator().manual_seed(0), **kw)
        freq = torch.bincount(out[:, 1], minlength=4).double() / len(idx)
        assert torch.allclose(freq, torch.as_tensor(expected, dtype=torch.float64), atol=0.015), (kw, freq)


def test_sampled_tokens_respect_top_k():
    table = random_table(10, 4)
    out = dec.sample(Bigram(table), torch.arange(10)[:, None], 20, top_k=3, generator=torch.Generator().manual_seed(1))
    top3 = torch.topk(table, 3, dim=-1).indices  # (V, 3) allowed successors of each token
    for prev, nxt in zip(out[:, :-1].flatten(), out[:, 1:].flatten()):
        assert nxt in top3[prev]


def test_greedy_worked_and_equivalences():
    # from 0 the largest logit is token 2, from 2 it is token 1, from 1 it is token 0: 0 -> 2 -> 1 -> 0 -> 2
    table = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [0.0, 5.0, 4.0]])
    assert dec.greedy(Bigram(table), torch.tensor([[0]]), 4).tolist() == [[0, 2, 1, 0, 2]]
    model, idx = Bigram(random_table(12, 5)), torch.tensor([[0, 4], [7, 7], [11, 3]])
    g = dec.greedy(model, idx, 15)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(g, dec.sample(model, idx, 15, temperature=0))
    assert torch.equal(g, dec.sample(model, idx, 15, top_k=1, generator=gen))
    assert torch.equal(g, dec.sample(model, idx, 15, top_p=1e-6, generator=gen))
    assert torch.equal(dec.greedy(model, idx, 0), idx)


def test_repetition_penalty_in_the_loops():
    # All logits positive: with a strong penalty a seen token (x / 100 < 0.1) never beats an unseen one (> 1).
    V = 9
    table = torch.rand(V, V, generator=torch.Generator().manual_seed(6)) + 1.0
    out = dec.greedy(Bigram(table), torch.tensor([[0, 1]]), V - 2, repetition_penalty=100.0)
    assert sorted(out[0].tolist()) == list(range(V))
    out = dec.sample(Bigram(table), torch.tensor([[0, 1]]), V - 2, repetition_penalty=100.0, temperature=0.05,
                     generator=torch.Generator().manual_seed(0))
    assert sorted(out[0].tolist()) == list(range(V))
    # without the penalty greedy loops (a bigram table's greedy path is eventually periodic)
    assert len(set(dec.greedy(Bigram(table), torch.tensor([[0, 1]]), 3 * V)[0].tolist())) < 3 * V + 2


class ContextModel:
    """Logits depend on the first token of the window it sees, so cropping the context matters.

    Raises if given more than ``block`` tokens, like a transformer with a fixed block size.
    """

    def __init__(self, V: int, block: int, seed: int):
        self.table, self.first, self.block = random_table(V, seed), random_table(V, seed + 1), block

    def __call__(self, idx):
        if idx.shape[1] > self.block:
            raise IndexError(f"context of {idx.shape[1]} tokens > block size {self.block}")
        return self.table[idx] + self.first[idx[:, :1]]  # (B, T, V)


def test_max_context_crops_the_context():
    model = ContextModel(V=6, block=4, seed=7)
    idx = torch.tensor([[1, 2], [3, 4]])
    with pytest.raises(IndexError):
        dec.greedy(model, idx, 5)
    out = dec.greedy(model, idx, 8, max_context=4)
    for t in range(2, out.shape[1]):  # each token is the argmax given the last 4 tokens before it
        window = out[:, max(0, t - 4):t]
        assert torch.equal(out[:, t], model(window)[:, -1].argmax(-1))
    out = dec.sample(model, idx, 8, max_context=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 10)
    res = dec.beam_search(model, idx[:1], 6, num_beams=3, max_context=4)
    assert all(len(s) == 8 for s in res.sequences)


def test_model_output_conventions():
    table = random_table(7, 8)
    idx = torch.tensor([[0, 3], [5, 6]])
    expected = dec.greedy(Bigram(table), idx, 6)
    tuple_model = lambda x: (table[x], None)  # nanoGPT: (logits, loss)
    last_only = lambda x: table[x][:, [-1], :]  # nanoGPT without targets: (B, 1, V)
    next_fn = lambda x: table[x[:, -1]]  # a next-token function: (B, V)
    for m in (tuple_model, last_only, next_fn):
        assert torch.equal(dec.greedy(m, idx, 6), expected)
    with pytest.raises(ValueError, match=r"must return logits of shape \(2, T, V\) or \(2, V\)"):
        dec.greedy(lambda x: table, idx, 1)
    with pytest.raises(TypeError, match="must return logits as a torch.Tensor"):
        dec.greedy(lambda x: x.tolist(), idx, 1)


def test_loop_errors_and_training_mode_warning():
    model = Bigram(random_table(5, 9))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*add a batch dimension"):
        dec.sample(model, torch.tensor([1, 2]), 3)
    with pytest.raises(TypeError, match="torch.long"):
        dec.greedy(model, torch.tensor([[1.0]]), 3)
    with pytest.raises(ValueError, match="at least one token"):
        dec.greedy(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        dec.sample(model, torch.tensor([[1]]), -1)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        dec.sample(model, torch.tensor([[1]]), 3, temperature=-1.0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        dec.sample(model, torch.tensor([[1]]), 3, top_p=0.0)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        dec.sample(model, torch.tensor([[1]]), 3, top_k=0)
    with pytest.raises(ValueError, match="max_context must be >= 1"):
        dec.sample(model, torch.tensor([[1]]), 3, max_context=0)
    with pytest.raises(ValueError, match=r"one prompt at a time: idx must have shape \(1, T\)"):
        dec.beam_search(model, torch.tensor([[1], [2]]), 3, num_beams=2)
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        dec.beam_search(model, torch.tensor([[1]]), 3, num_beams=0)
    with pytest.raises(ValueError, match="eos_id=7 is not a token id"):
        dec.beam_search(model, torch.tensor([[1]]), 3, num_beams=2, eos_id=7)
    net = torch.nn.Embedding(5, 5)  # an nn.Module left in training mode
    with pytest.warns(UserWarning, match="model.eval()"):
        dec.greedy(net, torch.tensor([[1]]), 1)
    net.eval()
    dec.greedy(net, torch.tensor([[1]]), 1)  # no warning (pytest's filterwarnings would not fail anyway)


# ----------------------------------------------------------------------------- beam search


def exhaustive(logp: torch.Tensor, prompt: list[int], L: int, eos_id=None, length_penalty=1.0):
    """Every possible continuation (stopping at eos), scored like beam_search; best first."""
    V, hyps = logp.shape[0], []
    for n in range(1, L + 1):
        for cont in itertools.product(range(V), repeat=n):
            ends = eos_id is not None and cont[-1] == eos_id
            if eos_id is not None and eos_id in cont[:-1]:
                continue
            if n < L and not ends:
                continue  # only complete hypotheses: ended by eos, or of full length
            seq = prompt + list(cont)
            lp = sum(float(logp[a, b]) for a, b in zip(seq[len(prompt) - 1:], seq[len(prompt):]))
            hyps.append((seq, lp, lp / n**length_penalty))
    return sorted(hyps, key=lambda h: -h[2])


def reference_beam(logp, prompt, L, K, eos_id=None, length_penalty=1.0):
    """Beam search written with Python lists and floats."""
    V, beams, done = logp.shape[0], [(prompt, 0.0)], []
    for step in range(1, L + 1):
        cands = [(s + float(logp[seq[-1], v]), seq + [v]) for seq, s in beams for v in range(V)]
        cands.sort(key=lambda c: -c[0])
        beams = []
        for s, seq in cands[:K]:
            (done.append((seq, s, step)) if eos_id is not None and seq[-1] == eos_id else beams.append((seq, s)))
        if not beams:
            break
    done += [(seq, s, L) for seq, s in beams]
    return sorted([(seq, s, s / n**length_penalty) for seq, s, n in done], key=lambda h: -h[2])[:K]


def assert_same(res, hyps, every):
    """``res`` holds the hypotheses ``hyps`` (best first), up to the order of exact ties.

    A bigram model gives exactly the same log-probability to two sequences with the same transitions
    (0 2 2 1 2 and 0 2 1 2 2), so among equal scores any order is right. ``every`` lists every complete
    hypothesis (from :func:`exhaustive`), to look up the true log-probability of what was returned.
    """
    truth = {tuple(seq): (lp, score) for seq, lp, score in every}
    got = [tuple(s.tolist()) for s in res.sequences]
    assert len(set(got)) == len(got) == len(hyps)
    assert torch.allclose(res.scores, torch.tensor([h[2] for h in hyps]), atol=1e-5)  # the best scores there are
    assert torch.allclose(res.log_probs, torch.tensor([truth[s][0] for s in got]), atol=1e-5)
    assert torch.allclose(res.scores, torch.tensor([truth[s][1] for s in got]), atol=1e-5)
    assert (res.scores[:-1] >= res.scores[1:]).all()  # sorted, best first


def test_beam_search_finds_what_greedy_misses():
    # From 0: p(1)=0.5, p(2)=0.4, p(0)=0.1. From 1 the best is 0.4; from 2 it is 0.9.
    # Greedy: 0 -> 1 -> (0.4) = 0.20.   Best of all: 0 -> 2 -> (0.9) = 0.36, found by 2 beams.
    probs = torch.tensor([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]])
    model = Bigram(probs.log())
    assert dec.greedy(model, torch.tensor([[0]]), 2).tolist() == [[0, 1, 2]]
    one = dec.beam_search(model, torch.tensor([[0]]), 2, num_beams=1)
    assert one.sequences[0].tolist() == [0, 1, 2] and math.isclose(one.log_probs[0].item(), math.log(0.2), rel_tol=1e-6)
    two = dec.beam_search(model, torch.tensor([[0]]), 2, num_beams=2, length_penalty=0.0)
    assert [s.tolist() for s in two.sequences] == [[0, 2, 2], [0, 1, 2]]
    assert torch.allclose(two.log_probs, torch.tensor([0.36, 0.20]).log())
    assert torch.allclose(two.scores, two.log_probs)  # length_penalty 0: plain sums


def test_beam_with_one_beam_is_greedy():
    for seed in range(5):
        model, idx = Bigram(random_table(6, seed)), torch.tensor([[seed % 6, (seed + 2) % 6]])
        res = dec.beam_search(model, idx, 7, num_beams=1)
        assert len(res.sequences) == 1 and torch.equal(res.sequences[0], dec.greedy(model, idx, 7)[0])


@pytest.mark.parametrize("V,L", [(3, 1), (3, 3), (4, 3), (3, 4)])
def test_beam_search_with_a_wide_beam_is_exhaustive(V, L):
    table = random_table(V, 10 * V + L)
    logp = torch.log_softmax(table, -1)
    K = V ** (L - 1)  # nothing is pruned before the last step
    res = dec.beam_search(Bigram(table), torch.tensor([[1, 0]]), L, num_beams=K)
    every = exhaustive(logp, [1, 0], L)
    assert_same(res, every[:K], every)
    assert math.isclose(float(torch.logsumexp(torch.tensor([h[1] for h in exhaustive(logp, [1, 0], L)]), 0)), 0.0,
                        abs_tol=1e-5)  # the exhaustive search really enumerates every sequence


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_with_eos_is_exhaustive(length_penalty):
    V, L, eos = 4, 4, 3
    table = random_table(V, 11)
    table[:, eos] += 0.5  # make early endings competitive
    K = V ** (L - 1)
    res = dec.beam_search(Bigram(table), torch.tensor([[0]]), L, num_beams=K, eos_id=eos, length_penalty=length_penalty)
    every = exhaustive(torch.log_softmax(table, -1), [0], L, eos_id=eos, length_penalty=length_penalty)
    assert_same(res, every[:K], every)
    assert any(len(s) < L + 1 for s in res.sequences)  # some hypotheses did end early


@pytest.mark.parametrize("K,eos,length_penalty",
                         [(2, None, 1.0), (3, None, 1.0), (2, 2, 1.0), (3, 0, 0.5), (5, 1, 2.0)])
def test_beam_search_matches_a_list_implementation(K, eos, length_penalty):
    V, L = 5, 5
    table = random_table(V, 20 + K)
    res = dec.beam_search(Bigram(table), torch.tensor([[4, 3]]), L, num_beams=K, eos_id=eos,
                          length_penalty=length_penalty)
    logp = torch.log_softmax(table, -1)
    every = exhaustive(logp, [4, 3], L, eos_id=eos, length_penalty=length_penalty)
    assert_same(res, reference_beam(logp, [4, 3], L, K, eos, length_penalty), every)


def test_beam_search_edge_cases():
    model = Bigram(random_table(3, 12))
    res = dec.beam_search(model, torch.tensor([[2]]), 0, num_beams=3)
    assert [s.tolist() for s in res.sequences] == [[2]] and res.log_probs.tolist() == [0.0]
    res = dec.beam_search(model, torch.tensor([[2]]), 1, num_beams=10)  # more beams than tokens
    assert len(res.sequences) == 3
    table = torch.tensor([[0.0, NEG_INF, NEG_INF], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # from 0 only 0 is possible
    res = dec.beam_search(Bigram(table), torch.tensor([[0]]), 3, num_beams=4)
    assert [s.tolist() for s in res.sequences] == [[0, 0, 0, 0]] and res.log_probs.tolist() == [0.0]


# ----------------------------------------------------------------------------- metrics


def test_distinct_n_worked_example():
    seqs = [[1, 2, 1, 2], [1, 2, 3]]
    assert dec.distinct_n(seqs, 1) == pytest.approx(3 / 7)
    assert dec.distinct_n(seqs, 2) == pytest.approx(3 / 5)  # (1,2),(2,1),(1,2) | (1,2),(2,3): no n-gram across
    assert dec.distinct_n(seqs, 3) == pytest.approx(3 / 3)
    assert dec.distinct_n([[4] * 5], 2) == pytest.approx(1 / 4)
    assert dec.distinct_n(torch.tensor([[1, 2, 1, 2], [1, 2, 3, 1]]), 2) == pytest.approx(4 / 6)
    assert dec.distinct_n(["abab", "abc"], 2) == pytest.approx(3 / 5)  # characters
    with pytest.raises(ValueError, match="no 4-grams"):
        dec.distinct_n([[1, 2], [3, 4, 5]], 4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        dec.distinct_n(seqs, 0)
    with pytest.raises(TypeError, match="list of sequences"):
        dec.distinct_n("abc", 1)


def test_sequence_log_likelihood_matches_the_table():
    table = random_table(6, 13)
    logp = torch.log_softmax(table, -1)
    seqs = torch.tensor([[0, 1, 2, 3, 4], [5, 5, 5, 1, 0]])
    got = dec.sequence_log_likelihood(Bigram(table), seqs, prompt_len=2)
    expected = [sum(float(logp[s[t - 1], s[t]]) for t in range(2, 5)) / 3 for s in seqs.tolist()]
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    next_fn = lambda x: table[x[:, -1]]  # the one-step-at-a-time path gives the same numbers
    assert torch.allclose(dec.sequence_log_likelihood(next_fn, seqs, 2), got, atol=1e-6)
    # greedy continuations are more likely than random ones, under the model that made them
    prompt = torch.arange(6)[:, None]
    g = dec.greedy(Bigram(table), prompt, 10)
    s = dec.sample(Bigram(table), prompt, 10, temperature=2.0, generator=torch.Generator().manual_seed(0))
    ll = lambda seqs: dec.sequence_log_likelihood(Bigram(table), seqs, 1).mean()
    assert ll(g) > ll(s)


def test_sequence_log_likelihood_with_max_context():
    model = ContextModel(V=5, block=3, seed=14)
    seqs = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [4, 4, 3, 3, 2, 2, 1]])
    got = dec.sequence_log_likelihood(model, seqs, prompt_len=2, max_context=3)
    expected = torch.zeros(2)
    for t in range(2, 7):
        window = seqs[:, max(0, t - 3):t]
        expected += torch.log_softmax(model(window)[:, -1], -1).gather(1, seqs[:, t:t + 1]).squeeze(1) / 5
    assert torch.allclose(got, expected, atol=1e-6)
    short = seqs[:, :4]  # fits in the block: one forward pass, same numbers as step by step
    one_pass = dec.sequence_log_likelihood(model, short, 1, max_context=3)
    steps = dec.sequence_log_likelihood(lambda x: model(x)[:, -1], short, 1, max_context=3)
    assert torch.allclose(one_pass, steps, atol=1e-6)
    with pytest.raises(ValueError, match="prompt_len must be < the sequence length T=7"):
        dec.sequence_log_likelihood(model, seqs, 7, max_context=3)
    with pytest.raises(ValueError, match="prompt_len must be >= 1"):
        dec.sequence_log_likelihood(model, seqs, 0, max_context=3)


def test_temperature_trades_quality_for_diversity():
    # The chapter's plot in miniature: higher temperature -> more distinct bigrams, lower likelihood.
    table = random_table(20, 15, scale=2.0)
    prompt = torch.arange(20)[:, None]
    stats = []
    for T in (0.3, 1.0, 3.0):
        out = dec.sample(Bigram(table), prompt, 30, temperature=T, generator=torch.Generator().manual_seed(0))
        stats.append((dec.distinct_n(out[:, 1:], 2), float(dec.sequence_log_likelihood(Bigram(table), out, 1).mean())))
    assert stats[0][0] < stats[1][0] < stats[2][0]
    assert stats[0][1] > stats[1][1] > stats[2][1]


# ----------------------------------------------------------------------------- exercises


def test_exercises_pass_with_the_reference():
    for name in ("apply_temperature", "top_k_filter", "top_p_filter", "repetition_penalty", "distinct_n"):
        result = check(f"ch06.{name}", getattr(dec, name), quiet=True)
        assert result.ok and result.total >= 9


def _topk_exactly_k(logits, k):  # topk + scatter: drops a tied token
    out = torch.full_like(logits, NEG_INF)
    v, i = torch.topk(logits, k, dim=-1)
    return out.scatter(-1, i, v)


def _topk_big_negative(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, [-1]]
    return logits.masked_fill(logits < kth, -1e9)


def _topp_cumsum_le(logits, p):  # keeps tokens whose cumulative mass is <= p: misses the one that crosses p
    s, i = torch.sort(logits, descending=True)
    remove = torch.softmax(s, -1).cumsum(-1) > p
    return logits.masked_fill(torch.zeros_like(remove).scatter(-1, i, remove), NEG_INF)


def _topp_no_ties(logits, p):  # the sorted-mask method without the tie rule
    s, i = torch.sort(logits, descending=True, stable=True)
    probs = torch.softmax(s, -1)
    remove = (probs.cumsum(-1) - probs) >= p
    return logits.masked_fill(torch.zeros_like(remove).scatter(-1, i, remove), NEG_INF)


def _topp_probabilities(logits, p):
    return torch.softmax(dec.top_p_filter(logits, p), -1)


def _penalty_always_divide(logits, prev, penalty):
    seen = logits.gather(-1, prev)
    return logits.scatter(-1, prev, seen / penalty)


def _penalty_per_occurrence(logits, prev, penalty):
    out = logits.clone()
    for b in range(prev.shape[0]):
        for t in prev[b].tolist():
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out


def _distinct_across(seqs, n):  # joins the sequences: counts n-grams across boundaries
    flat = [x for s in seqs for x in s]
    grams = [tuple(flat[i:i + n]) for i in range(len(flat) - n + 1)]
    return len(set(grams)) / len(grams)


@pytest.mark.parametrize("id,wrong,hint", [
    ("ch06.apply_temperature", lambda x, T: x * T, "wrong values"),
    ("ch06.top_k_filter", lambda x, k: dec.top_k_filter(x, k + 1) if k < x.shape[1] else x, "keeps tokens"),
    ("ch06.top_k_filter", _topk_exactly_k, "tie"),
    ("ch06.top_k_filter", _topk_big_negative, "not to a large negative number"),
    ("ch06.top_p_filter", _topp_cumsum_le, "keeps tokens"),
    ("ch06.top_p_filter", _topp_no_ties, "tied"),
    ("ch06.top_p_filter", _topp_probabilities, "not probabilities"),
    ("ch06.repetition_penalty", _penalty_always_divide, "wrong values"),
    ("ch06.repetition_penalty", _penalty_per_occurrence, "penalised once"),
    ("ch06.distinct_n", _distinct_across, "across two sequences"),
])
def test_exercises_fail_with_wrong_functions(id, wrong, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check(id, wrong, quiet=True)
