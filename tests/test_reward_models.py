"""Reward models that score whole sequences (the last real token's hidden state) next to per-step ones.

lmlib.preferences.scoring: sequence_scores is the one home for "a reward model's score of a batch of
segments"; SequenceRewardModel reads a trunk's hidden state at each row's last real token.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

from lmlib import preferences as P


pytestmark = pytest.mark.usefixtures("one_thread")


class CumMaxTrunk(nn.Module):
    """A tiny causal trunk: position t's state is the running max of the embeddings of tokens 0..t."""

    def __init__(self, vocab_size: int = 8, hidden_size: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, hidden_size)

    def hidden_states(self, ids):
        return torch.cummax(self.emb(ids), dim=1).values  # (B, L, C)


class IdentityTrunk(nn.Module):
    """hidden_states(ids) = one-hot of the token at each position: the score reveals which position was read."""

    def __init__(self, vocab_size: int = 8) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def hidden_states(self, ids):
        return torch.nn.functional.one_hot(ids, self.vocab_size).float()


def _seq_model(seed=0, vocab_size=8, hidden_size=8):
    torch.manual_seed(seed)
    return P.SequenceRewardModel(CumMaxTrunk(vocab_size, hidden_size), hidden_size)


# --------------------------------------------------------------------------- sequence_scores


def test_sequence_scores_of_a_per_step_model_is_the_masked_sum():
    torch.manual_seed(0)
    model = P.MLPRewardModel(in_dim=3, hidden=8, n_layers=1)
    x = torch.randn(4, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    got = P.sequence_scores(model, x, mask)
    assert got.shape == (4,)
    torch.testing.assert_close(got, P.masked_sum(P.per_step_rewards(model, x), mask))
    torch.testing.assert_close(P.sequence_scores(model, x), model(x).sum(dim=1))  # no mask: every step is real
    torch.testing.assert_close(P.sequence_scores(model, x, mask.float()), got)  # 0/1 masks work too


def test_last_token_index_worked_example_and_errors():
    assert P.last_token_index(torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] of the mask have no real token"):
        P.last_token_index(torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] of the mask are not right-padded"):
        P.last_token_index(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        P.last_token_index(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="only 0 and 1"):
        P.last_token_index(torch.tensor([[1, 2]]))


def test_sequence_model_reads_the_last_real_token():
    model = P.SequenceRewardModel(IdentityTrunk(8), 8)
    with torch.no_grad():
        model.head.weight.copy_(torch.arange(8.0)[None])  # score = id of the token read
        model.head.bias.zero_()
    ids = torch.tensor([[5, 2, 7, 0], [3, 4, 0, 0], [6, 6, 6, 1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert model(ids, mask).tolist() == [7.0, 4.0, 1.0]
    assert P.sequence_scores(model, ids, mask).tolist() == [7.0, 4.0, 1.0]  # the protocol passes the mask
    assert P.is_sequence_model(model) and not P.is_sequence_model(P.MLPRewardModel(in_dim=2))


def test_padding_does_not_change_a_sequence_score():
    model = _seq_model()
    rows = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6, 7, 1, 2])]
    alone = torch.stack([model(r[None], torch.ones(1, len(r), dtype=torch.bool))[0] for r in rows])
    for pad in (0, 7):
        ids = torch.full((3, 5), pad)
        mask = torch.zeros(3, 5, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, True
        torch.testing.assert_close(model(ids, mask), alone)


def test_sequence_model_errors_name_the_problem():
    model = _seq_model()
    ids = torch.tensor([[1, 2], [3, 0]])
    with pytest.raises(ValueError, match="no real token"):
        model(ids, torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="mask has shape"):
        model(ids, torch.ones(2, 3))
    with pytest.raises(ValueError, match="integer dtype"):
        model(ids.float(), torch.ones(2, 2))
    with pytest.raises(TypeError, match="hidden_states"):
        P.SequenceRewardModel(nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        P.SequenceRewardModel(CumMaxTrunk(), 0)
    with pytest.raises(ValueError, match=r"must return \(B, L, hidden_size\) = \(2, 2, 4\), got \(2, 2, 8\)"):
        P.SequenceRewardModel(CumMaxTrunk(8, 8), 4)(ids, torch.ones(2, 2))


def test_the_protocol_is_explicit():
    x = torch.zeros(2, 3, dtype=torch.long)
    # A model that returns one score per sequence but does not say so: a clear error with the fix.
    with pytest.raises(ValueError, match="scores_sequences = True"):
        P.sequence_scores(lambda x: x.sum(dim=1).float(), x)

    class Bad(nn.Module):
        scores_sequences = True

        def forward(self, x, mask):
            return torch.zeros(x.shape)  # (B, L): wrong for a sequence model

    with pytest.raises(ValueError, match=r"one score per sequence \(2,\), got \(2, 3\)"):
        P.sequence_scores(Bad(), x)
    with pytest.raises(ValueError, match=r"\(B, L\) token ids or \(B, L, D\) features"):
        P.sequence_scores(Bad(), torch.zeros(3))


# --------------------------------------------------------------------------- training with the Chapter 11 loop


def _contains_token_task(n_segments=80, n_pairs=240, seed=0):
    """Token sequences; the rater prefers one that contains token 3. Those are SHORTER (2-4 tokens) than the
    others (4-8 tokens), so a model that simply favoured length would be wrong."""
    rng = np.random.default_rng(seed)
    segs = []
    for i in range(n_segments):
        has = i % 2 == 0
        n = int(rng.integers(2, 5) if has else rng.integers(4, 9))
        toks = rng.choice([1, 2, 4, 5, 6, 7], size=n)
        if has:
            toks[rng.integers(n)] = 3
        segs.append(P.Segment(toks))
    rater = P.SyntheticRater(reward_fn=lambda s: float(3 in s.obs), rng=seed)
    pairs = [p for p in P.sample_pairs(segs, n_pairs, rng) if (3 in p.left.obs) != (3 in p.right.obs)]
    return rater.label(pairs)


def test_train_reward_model_trains_a_sequence_model():
    ds = _contains_token_task()
    model = _seq_model(seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    hist = P.train_reward_model(model, ds, epochs=25, lr=3e-2, batch_size=32, seed=0, epsilon=0.0)
    assert hist["loss"][-1] < hist["loss"][0], "the loss falls"
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "the parameters change"
    assert hist["val_accuracy"][-1] >= 0.9, hist["val_accuracy"]
    assert P.evaluate_reward_model(model, ds)["accuracy"] >= 0.9


def test_pair_loss_of_a_per_step_model_equals_preference_loss_on_its_rewards():
    """The one loop now scores through sequence_scores; for a per-step model the loss is the Chapter 11 one."""
    rng = np.random.default_rng(1)
    segs = []
    for _ in range(12):
        n = int(rng.integers(2, 6))
        segs.append(P.Segment(rng.normal(size=(n, 3)).astype(np.float32), rewards=rng.normal(size=n)))
    batch = P.SyntheticRater(rng=0).label(P.sample_pairs(segs, 10, rng)).collate()
    torch.manual_seed(0)
    model = P.MLPRewardModel(in_dim=3, hidden=8, n_layers=1)
    got, diag = P.pair_loss(model, batch, 0.1)
    ref, ref_diag = P.preference_loss(model(batch.left), model(batch.right), batch.mu, 0.1,
                                      batch.mask_left, batch.mask_right)
    torch.testing.assert_close(got, ref)
    assert diag == pytest.approx(ref_diag)


def test_an_ensemble_of_sequence_models():
    ds = _contains_token_task(seed=2)
    ens = P.RewardEnsemble([_seq_model(seed=s) for s in range(3)])
    assert ens.scores_sequences and P.is_sequence_model(ens)
    P.train_reward_model(ens, ds, epochs=15, lr=3e-2, batch_size=32, seed=0, epsilon=0.0)
    x, mask = P.collate_segments(ds.segments())
    assert ens.predict(x, mask).shape == (len(x),)
    s = ens.member_scores(x, mask, normalized=True)  # (K, B), normalised on exactly these segments
    assert s.shape == (3, len(x))
    torch.testing.assert_close(s.mean(dim=1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.std(dim=1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    pairs = [ds[i][0] for i in range(5)]
    assert ens.disagreement(pairs).shape == (5,)
    assert P.evaluate_reward_model(ens, ds)["accuracy"] >= 0.9
    assert P.select_queries(pairs, ens, 2) and len(P.select_queries(pairs, ens, 2)) == 2
    with pytest.raises(TypeError, match="member_scores"):
        ens.member_rewards(x)
    with pytest.raises(ValueError, match="not a mix"):
        P.RewardEnsemble([_seq_model(), P.MLPRewardModel(vocab_size=8)])


def test_a_per_step_ensemble_scores_are_masked_sums():
    ens = P.RewardEnsemble.of_mlps(2, seed=0, in_dim=3, hidden=8)
    assert not ens.scores_sequences
    x, mask = torch.randn(4, 5, 3), torch.arange(5)[None] < torch.tensor([[2], [5], [1], [3]])
    torch.testing.assert_close(ens.member_scores(x, mask), ens.member_rewards(x).masked_fill(~mask, 0).sum(-1))
    torch.testing.assert_close(P.sequence_scores(ens, x, mask), ens(x).masked_fill(~mask, 0).sum(-1))


# --------------------------------------------------------------------------- the book's GPT as a trunk

try:
    from lmlib.lm.gpt import GPT, GPTConfig  # the tests may import any layer; lmlib.preferences may not
    _HAS_HIDDEN = hasattr(GPT, "hidden_states")
except ImportError:  # pragma: no cover
    _HAS_HIDDEN = False


@pytest.mark.skipif(not _HAS_HIDDEN, reason="lmlib.lm.gpt.GPT has no hidden_states(idx) method yet")
def test_a_tiny_gpt_as_the_trunk():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16))
    model = P.SequenceRewardModel(gpt, 16)
    ids = torch.randint(0, 17, (3, 6))
    mask = torch.arange(6)[None] < torch.tensor([[6], [2], [4]])
    scores = P.sequence_scores(model, ids, mask)
    assert scores.shape == (3,)
    for i, n in enumerate([6, 2, 4]):  # padding after the last real token changes nothing (causal attention)
        alone = model(ids[i : i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(scores[i : i + 1], alone, atol=1e-5, rtol=1e-5)
    scores.sum().backward()
    assert model.head.weight.grad is not None
    assert any(p.grad is not None for p in gpt.parameters()), "the trunk is trained too"
