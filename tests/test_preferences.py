"""lmlib.preferences: Bradley-Terry reward learning from preferences (Christiano et al. 2017)."""
import ast
import inspect
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib import _io
from lmlib import preferences as P
from lmlib.exercises import ExerciseFailed, check, get

# --------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.usefixtures("one_thread")



def feature_segment(rng, L=6, D=4, w=None, components=False):
    obs = rng.normal(size=(L, D)).astype(np.float32)
    rewards = None
    if w is not None:
        r = obs @ w
        rewards = np.stack([r, -0.5 * r], axis=1) if components else r
    return P.Segment(obs, rewards=rewards)


class Linear(nn.Module):
    """Fixed per-step reward w·x (a hand-built ensemble member)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))

    def forward(self, x):
        return x @ self.w


# --------------------------------------------------------------------------- the Bradley-Terry model


def test_worked_probabilities():
    # sigma(2) = 1 / (1 + e^-2) = 0.880797; with eps = 0.1: 0.9 * 0.880797 + 0.05 = 0.842717.
    assert P.preference_probability(2.0, 0.0, epsilon=0.0) == pytest.approx(0.880797, abs=1e-6)
    assert P.preference_probability(2.0, 0.0, epsilon=0.1) == pytest.approx(0.842717, abs=1e-6)
    assert P.preference_probability(5.0, 3.0) == pytest.approx(0.842717, abs=1e-6), "default epsilon is 0.1"
    t = P.preference_probability(torch.tensor([2.0, 0.0, -2.0]), torch.zeros(3), epsilon=0.1)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [0.842717, 0.5, 1 - 0.842717], atol=1e-6)
    a = P.preference_probability(np.array([2.0, 1000.0, -1000.0]), 0.0, epsilon=0.1)
    np.testing.assert_allclose(a, [0.842717, 0.95, 0.05], atol=1e-6)


finite = st.floats(-50, 50, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(a=finite, b=finite, eps=st.floats(0, 1), mu=st.sampled_from([0.0, 0.5, 1.0]))
def test_swapping_left_and_right_is_consistent(a, b, eps, mu):
    p = P.preference_probability(a, b, eps)
    assert p + P.preference_probability(b, a, eps) == pytest.approx(1.0, abs=1e-12)
    assert eps / 2 - 1e-12 <= p <= 1 - eps / 2 + 1e-12
    ta, tb = torch.tensor([[a]], dtype=torch.float64), torch.tensor([[b]], dtype=torch.float64)
    loss, _ = P.preference_loss(ta, tb, torch.tensor([mu]), eps)
    swapped, _ = P.preference_loss(tb, ta, torch.tensor([1 - mu]), eps)
    assert loss.item() == pytest.approx(swapped.item(), rel=1e-9, abs=1e-12)
    # Only where the naive formula is itself accurate: log(1 - p) loses digits as p -> 1.
    expected = -(mu * math.log(p) + (1 - mu) * math.log(1 - p)) if 1e-6 < p < 1 - 1e-6 else None
    if expected is not None:
        assert loss.item() == pytest.approx(expected, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
def test_bad_epsilon_is_named(eps):
    with pytest.raises(ValueError, match="epsilon"):
        P.preference_probability(1.0, 0.0, epsilon=eps)


def test_loss_equals_hand_computed_cross_entropy():
    left = torch.tensor([[1.0, 1.0], [0.5, -0.5]])  # returns 2, 0
    right = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # returns 0, 1
    mu = torch.tensor([1.0, 0.0])
    eps = 0.1
    p1 = 0.9 / (1 + math.exp(-2.0)) + 0.05  # P[left better], pair 1 (label: left)
    p2 = 0.9 / (1 + math.exp(1.0)) + 0.05  # P[left better], pair 2 (label: right)
    expected = -(math.log(p1) + math.log(1 - p2)) / 2
    loss, diag = P.preference_loss(left, right, mu, eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert diag == {"accuracy": 1.0, "margin": pytest.approx(1.5)}  # margins 2 and 1
    loss0, _ = P.preference_loss(left, right, mu, 0.0)
    expected0 = -(math.log(1 / (1 + math.exp(-2.0))) + math.log(1 - 1 / (1 + math.exp(1.0)))) / 2
    assert loss0.item() == pytest.approx(expected0, rel=1e-6)


def test_accuracy_counts_wrong_predictions():
    left = torch.tensor([[3.0], [0.0], [1.0]])
    right = torch.tensor([[1.0], [2.0], [1.0]])
    _, diag = P.preference_loss(left, right, torch.tensor([1.0, 1.0, 1.0]), 0.1)
    assert diag["accuracy"] == pytest.approx(1 / 3)  # a tie in prediction (1 vs 1) is not correct
    assert diag["margin"] == pytest.approx((2 - 2 + 0) / 3)


def test_gradient_sign():
    left = torch.zeros(3, 4, requires_grad=True)
    right = torch.zeros(3, 4, requires_grad=True)
    mu = torch.tensor([1.0, 0.0, 1.0])
    loss, _ = P.preference_loss(left, right, mu, 0.1)
    loss.backward()
    # Raising the preferred segment's reward lowers the loss; raising the other one's raises it.
    assert (left.grad[[0, 2]] < 0).all() and (right.grad[[0, 2]] > 0).all()
    assert (right.grad[1] < 0).all() and (left.grad[1] > 0).all()
    with torch.no_grad():
        bumped = left.clone()
        bumped[0] += 0.1
    assert P.preference_loss(bumped, right, mu, 0.1)[0] < loss


def test_ties():
    r = torch.tensor([[0.3, 0.2]], requires_grad=True)
    loss, diag = P.preference_loss(r, torch.tensor([[0.5, 0.0]]), torch.tensor([0.5]), 0.1)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)  # P = 0.5 on a tie: -log 0.5
    loss.backward()
    assert torch.allclose(r.grad, torch.zeros_like(r), atol=1e-7), "a tie is satisfied by equal returns"
    assert math.isnan(diag["accuracy"]) and math.isnan(diag["margin"]), "ties carry no accuracy"
    # Any other difference is worse, in either direction.
    for d in (-1.0, 1.0):
        worse, _ = P.preference_loss(torch.tensor([[d]]), torch.tensor([[0.0]]), torch.tensor([0.5]), 0.1)
        assert worse.item() > math.log(2)


def test_masks_padding_does_not_change_result():
    rng = np.random.default_rng(0)
    lengths_l, lengths_r = [3, 5, 2], [4, 1, 5]
    seqs_l = [torch.tensor(rng.normal(size=n), dtype=torch.float32) for n in lengths_l]
    seqs_r = [torch.tensor(rng.normal(size=n), dtype=torch.float32) for n in lengths_r]
    mu = torch.tensor([1.0, 0.5, 0.0])
    # Reference: sum each sequence by hand.
    ret_l = torch.stack([s.sum() for s in seqs_l])[:, None]
    ret_r = torch.stack([s.sum() for s in seqs_r])[:, None]
    expected, _ = P.preference_loss(ret_l, ret_r, mu, 0.1)

    def pad(seqs, fill):
        x = torch.full((len(seqs), 5), fill)
        m = torch.zeros(len(seqs), 5, dtype=torch.bool)
        for i, s in enumerate(seqs):
            x[i, : len(s)], m[i, : len(s)] = s, True
        return x, m

    for fill in (0.0, 1e6, float("nan")):
        xl, ml = pad(seqs_l, fill)
        xr, mr = pad(seqs_r, fill)
        got, _ = P.preference_loss(xl, xr, mu, 0.1, mask_left=ml, mask_right=mr)
        assert got.item() == pytest.approx(expected.item(), rel=1e-6), f"padding value {fill} leaked"
        got_float_mask, _ = P.preference_loss(xl, xr, mu, 0.1, mask_left=ml.float(), mask_right=mr.float())
        assert got_float_mask.item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_is_stable_for_confident_models():
    left, right = torch.tensor([[200.0]]), torch.tensor([[0.0]])
    loss, _ = P.preference_loss(left, right, torch.tensor([0.0]), 0.0)
    assert loss.item() == pytest.approx(200.0, rel=1e-5)  # -log sigma(-200) = 200, not inf
    loss, _ = P.preference_loss(left, right, torch.tensor([0.0]), 0.1)
    assert loss.item() == pytest.approx(-math.log(0.05), rel=1e-5)  # floor at eps/2


def test_loss_input_errors_are_clear():
    r = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"mu must have shape \(2,\)"):
        P.preference_loss(r, r, torch.ones(3))
    with pytest.raises(ValueError, match=r"mu must lie in \[0, 1\]"):
        P.preference_loss(r, r, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="batches differ"):
        P.preference_loss(r, torch.zeros(3, 3), torch.ones(2))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        P.preference_loss(torch.zeros(2), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match=r"mask_left has shape \(2, 4\) but the values have shape \(2, 3\)"):
        P.preference_loss(r, r, torch.ones(2), mask_left=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="only 0 and 1"):
        P.masked_sum(r, torch.full((2, 3), 2.0))


# --------------------------------------------------------------------------- segments, pairs, datasets


def test_segment_validation_and_features():
    with pytest.raises(ValueError, match="integer token ids"):
        P.Segment(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        P.Segment(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"rewards must have shape \(4,\)"):
        P.Segment(np.zeros((4, 2)), rewards=np.zeros(3))
    with pytest.raises(ValueError, match="token segment cannot have actions"):
        P.Segment(np.arange(4), actions=np.arange(4))
    s = P.Segment(torch.zeros(4, 2), actions=np.eye(4, 3))
    assert s.features.shape == (4, 5) and s.features.dtype == np.float32, "actions are appended: r(o, a)"
    tok = P.Segment(torch.tensor([5, 1, 2]))
    assert tok.is_tokens and len(tok) == 3 and tok.obs.dtype == np.int64
    with pytest.raises(ValueError, match="no true rewards"):
        tok.true_return


def test_pair_ids_are_content_hashes():
    rng = np.random.default_rng(0)
    a, b = feature_segment(rng), feature_segment(rng)
    p1 = P.PreferencePair(a, b)
    p2 = P.PreferencePair(P.Segment(a.obs.copy()), P.Segment(b.obs.copy()))
    assert p1.id == p2.id and len(p1.id) == 16, "rebuilt after a restart, the pair gets the same id"
    assert P.PreferencePair(b, a).id != p1.id
    assert P.PreferencePair(a, b, id="custom").id == "custom"
    with pytest.raises(ValueError, match="token segments or two feature"):
        P.PreferencePair(a, P.Segment(np.arange(3)))


def test_dataset_labels_and_cant_tell():
    rng = np.random.default_rng(0)
    pairs = P.sample_pairs([feature_segment(rng) for _ in range(5)], 6, rng)
    ds = P.PreferenceDataset(pairs[:5], ["left", "right", "equal", "cant_tell", 1.0])
    assert len(ds) == 4 and ds.mu == [1.0, 0.0, 0.5, 1.0]
    assert ds.skipped == [pairs[3]], "can't-tell answers are recorded but not trained on"
    assert ds.add(pairs[5], None) is False and len(ds.skipped) == 2
    with pytest.raises(ValueError, match="unknown label 'better'"):
        ds.add(pairs[0], "better")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ds.add(pairs[0], 1.5)
    for p in pairs:
        assert p.left is not p.right


def test_collate_pads_variable_lengths():
    segs = [P.Segment(np.arange(1, n + 1)) for n in (2, 5, 3)]
    x, mask = P.collate_segments(segs)
    assert x.shape == (3, 5) and x.dtype == torch.long
    assert mask.sum(1).tolist() == [2, 5, 3]
    assert x[0].tolist() == [1, 2, 0, 0, 0]
    fx, fm = P.collate_segments([P.Segment(np.ones((2, 3))), P.Segment(np.ones((4, 3)))])
    assert fx.shape == (2, 4, 3) and fx.dtype == torch.float32 and fm.tolist()[0] == [True, True, False, False]
    with pytest.raises(ValueError, match="different feature sizes"):
        P.collate_segments([P.Segment(np.ones((2, 3))), P.Segment(np.ones((2, 4)))])


def test_bootstrap_resamples():
    a = P.bootstrap_indices(200, np.random.default_rng(1))
    b = P.bootstrap_indices(200, np.random.default_rng(2))
    assert a.shape == b.shape == (200,)
    assert a.min() >= 0 and a.max() < 200
    assert len(np.unique(a)) < 200, "drawn with replacement: some pairs repeat"
    assert 0.55 < len(np.unique(a)) / 200 < 0.72, "about 63% distinct pairs per resample"
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, P.bootstrap_indices(200, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="empty"):
        P.bootstrap_indices(0, 0)


def test_ensemble_members_train_on_different_resamples():
    rng = np.random.default_rng(0)
    w = rng.normal(size=3)
    segs = [feature_segment(rng, L=4, D=3, w=w) for _ in range(30)]
    ds = P.SyntheticRater(rng=0).label(P.sample_pairs(segs, 40, rng))
    ens = P.RewardEnsemble.of_mlps(k=3, seed=0, in_dim=3, hidden=8, n_layers=1)
    hist = P.train_reward_model(ens, ds, epochs=2, lr=1e-2, batch_size=16, seed=0, val_fraction=0.25)
    n_train = len(ds) - round(0.25 * len(ds))
    boots = hist["bootstrap"]
    assert len(boots) == 3 and all(b.shape == (n_train,) for b in boots)
    assert not np.array_equal(boots[0], boots[1]) and not np.array_equal(boots[1], boots[2])
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy", "members"}
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["val_loss"]))
    assert P.train_reward_model(P.RewardEnsemble.of_mlps(k=3, seed=0, in_dim=3, hidden=8, n_layers=1), ds,
                                epochs=2, lr=1e-2, batch_size=16, seed=0, val_fraction=0.25)["loss"] == hist["loss"]
    out = ens.predict(torch.zeros(2, 4, 3))
    assert out.shape == (2, 4) and not out.requires_grad


# --------------------------------------------------------------------------- normalisation and disagreement


def test_normalisation_zero_mean_unit_std():
    ens = P.RewardEnsemble([Linear([3.0, 0.0]), Linear([0.0, -10.0]), Linear([1.0, 1.0])])
    x = torch.randn(50, 7, 2, generator=torch.Generator().manual_seed(0)) + torch.tensor([5.0, -2.0])
    raw = ens.member_rewards(x, normalized=True)
    assert torch.equal(raw, ens.member_rewards(x)), "identity before any update"
    ens.update_normalization(x)
    r = ens.member_rewards(x, normalized=True).detach()  # (K, B, L)
    flat = r.reshape(3, -1).double()
    np.testing.assert_allclose(flat.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(1, unbiased=False).numpy(), 1.0, atol=1e-5)
    torch.testing.assert_close(ens.predict(x), r.mean(0))
    # Running statistics: two halves equal the whole.
    ens2 = P.RewardEnsemble([Linear([3.0, 0.0]), Linear([0.0, -10.0]), Linear([1.0, 1.0])])
    ens2.update_normalization(x[:20])
    ens2.update_normalization(x[20:])
    torch.testing.assert_close(ens2.norm_mean, ens.norm_mean)
    torch.testing.assert_close(ens2.norm_var, ens.norm_var)
    # Masked (padding) steps are not counted.
    mask = torch.zeros(50, 7, dtype=torch.bool)
    mask[:, :3] = True
    ens3 = P.RewardEnsemble([Linear([1.0, 0.0])])
    ens3.update_normalization(torch.where(mask[..., None], x, torch.full_like(x, 1e4)), mask)
    assert abs(ens3.norm_mean.item() - x[:, :3, 0].double().mean().item()) < 1e-5


def test_disagreement_selects_pairs_members_disagree_on():
    # Members agree that feature 0 is good and disagree about feature 1.
    ens = P.RewardEnsemble([Linear([1.0, 1.0]), Linear([1.0, -1.0]), Linear([1.0, 0.0])])
    base = np.zeros((3, 2), dtype=np.float32)

    def seg(f0, f1):
        o = base.copy()
        o[:, 0], o[:, 1] = f0, f1
        return P.Segment(o)

    agree = [P.PreferencePair(seg(1.0, 0.0), seg(0.0, 0.0), id=f"agree{i}") for i in range(4)]
    disagree = [P.PreferencePair(seg(0.0, 0.5 * (i + 1)), seg(0.0, 0.0), id=f"dis{i}") for i in range(3)]
    candidates = agree[:2] + disagree[:1] + agree[2:] + disagree[1:]
    d = ens.disagreement(candidates)
    assert d.shape == (7,)
    np.testing.assert_allclose(d[[0, 1, 3, 4]], 0.0, atol=1e-7)
    chosen, scores = P.select_queries(candidates, ens, 3, return_scores=True)
    assert [p.id for p in chosen] == ["dis2", "dis1", "dis0"], "largest disagreement first"
    assert np.all(np.diff(scores) <= 0)
    probs = ens.member_probabilities(disagree[:1], epsilon=0.0)  # returns +1.5, -1.5, 0
    np.testing.assert_allclose(probs[:, 0], [1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(1.5)), 0.5], rtol=1e-6)


def test_random_selection():
    rng = np.random.default_rng(0)
    pairs = P.sample_pairs([feature_segment(rng) for _ in range(10)], 20, rng)
    a = P.select_queries(pairs, None, 5, method="random", rng=3)
    assert len(a) == 5 and len({id(p) for p in a}) == 5
    assert [p.id for p in a] == [p.id for p in P.select_queries(pairs, None, 5, method="random", rng=3)]
    with pytest.raises(ValueError, match="needs rng"):
        P.select_queries(pairs, None, 5, method="random")
    with pytest.raises(ValueError, match="k must be between"):
        P.select_queries(pairs, None, 21, method="random", rng=0)
    with pytest.raises(ValueError, match="unknown method"):
        P.select_queries(pairs, None, 2, method="entropy", rng=0)


def test_label_schedule():
    sched = P.label_schedule(1000, 10_000)
    assert sched(0) == 250, "25% of the labels up front"
    assert sched(10_000) == 1000 and sched(50_000) == 1000
    counts = [sched(t) for t in range(0, 10_001, 100)]
    assert all(b >= a for a, b in zip(counts, counts[1:]))
    first, second = sched(5000) - sched(0), sched(10_000) - sched(5000)
    assert first > 2 * second, "the labelling rate decreases"
    # The formula: n0 + (N - n0) log(1 + t/tau) / log(1 + T/tau), tau = T/10.
    assert sched(2000) == math.floor(250 + 750 * math.log(3) / math.log(11))
    assert sched.due(2000, have=300) == sched(2000) - 300 and sched.due(0, have=400) == 0
    with pytest.raises(ValueError, match="initial_fraction"):
        P.label_schedule(10, 10, initial_fraction=2)


# --------------------------------------------------------------------------- the synthetic rater


def test_synthetic_rater_is_correct_without_noise():
    rng = np.random.default_rng(0)
    w = rng.normal(size=4)
    segs = [feature_segment(rng, w=w) for _ in range(20)]
    rater = P.SyntheticRater()
    for p in P.sample_pairs(segs, 50, rng):
        expected = "left" if p.left.true_return > p.right.true_return else "right"
        assert rater(p) == expected
    a = P.Segment(np.zeros((2, 1)), rewards=[1.0, 1.0])
    b = P.Segment(np.ones((2, 1)), rewards=[1.5, 0.25])
    assert P.SyntheticRater(equal_tol=0.0)(P.PreferencePair(a, b)) == "left"
    assert P.SyntheticRater(equal_tol=0.25)(P.PreferencePair(a, b)) == "equal"
    assert P.SyntheticRater(reward_fn=lambda s: -s.rewards)(P.PreferencePair(a, b)) == "right"
    with pytest.raises(ValueError, match="no true rewards"):
        P.SyntheticRater()(P.PreferencePair(P.Segment(np.zeros((2, 1))), b))


def test_synthetic_rater_noise_rate():
    rng = np.random.default_rng(1)
    segs = [P.Segment(np.zeros((1, 1)) + i, rewards=[float(i)]) for i in range(10)]
    pairs = P.sample_pairs(segs, 4000, rng)
    rater = P.SyntheticRater(noise=0.3, rng=7)
    wrong = np.mean([rater(p) != ("left" if p.left.true_return > p.right.true_return else "right") for p in pairs])
    # A random answer is wrong half the time: expected error rate 0.15, sd = sqrt(.15 * .85 / 4000) = 0.0056.
    assert abs(wrong - 0.15) < 4 * 0.0056
    r1, r2 = P.SyntheticRater(noise=0.3, rng=7), P.SyntheticRater(noise=0.3, rng=7)
    assert [r1(p) for p in pairs[:200]] == [r2(p) for p in pairs[:200]]


def test_synthetic_rater_blind_spot():
    # Component 0: task reward; component 1: a side effect the blind rater cannot see.
    a = P.Segment(np.zeros((2, 1)), rewards=[[1.0, -5.0], [1.0, -5.0]])  # good at the task, harmful
    b = P.Segment(np.ones((2, 1)), rewards=[[0.5, 0.0], [0.5, 0.0]])
    pair = P.PreferencePair(a, b)
    assert P.SyntheticRater()(pair) == "right"
    assert P.SyntheticRater(ignore_components=[1])(pair) == "left"
    with pytest.raises(ValueError, match="out of range"):
        P.SyntheticRater(ignore_components=[2])(pair)
    with pytest.raises(ValueError, match=r"\(L, C\)"):
        P.SyntheticRater(ignore_components=[1])(P.PreferencePair(P.Segment(np.zeros((1, 1)), rewards=[1.0]), b))


# --------------------------------------------------------------------------- the label file


def test_label_store_append_and_resume(tmp_path):
    path = tmp_path / "labels.jsonl"
    rng = np.random.default_rng(0)
    pairs = P.sample_pairs([feature_segment(rng) for _ in range(6)], 4, rng)
    store = P.LabelStore(path, rater="ada")
    assert len(store) == 0 and store.next_unlabelled(pairs) is pairs[0]
    store.add(pairs[0].id, "left")
    store.add(pairs[1], "cant_tell")
    rec = store.add(pairs[2].id, "equal", seconds=3.5)
    assert rec["rater"] == "ada" and rec["seconds"] == 3.5 and "time" in rec
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["choice"] == "left"
    reopened = P.LabelStore(path)
    assert reopened.labels() == store.labels()
    assert reopened.done_ids() == {pairs[0].id, pairs[1].id, pairs[2].id}
    assert reopened.next_unlabelled(pairs) is pairs[3]
    with pytest.raises(ValueError, match="already has a label"):
        reopened.add(pairs[0].id, "right")
    reopened.add(pairs[0].id, "right", replace=True)
    assert reopened.choices()[pairs[0].id] == "right", "latest answer counts"
    assert store.choices()[pairs[0].id] == "right", "another store on the same file notices new lines"
    ds = P.PreferenceDataset.from_labels(pairs, reopened)
    assert len(ds) == 2 and ds.mu == [0.0, 0.5] and len(ds.skipped) == 1
    with pytest.raises(ValueError, match="different seed"):
        P.PreferenceDataset.from_labels(pairs[1:], reopened)
    with pytest.raises(ValueError, match="choice must be one of"):
        store.add(pairs[3].id, "both")


def test_label_store_tolerates_torn_last_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    store = P.LabelStore(path)
    store.add("a", "left")
    store.add("b", "right")
    good = path.read_bytes()
    with open(path, "ab") as f:  # a crash in the middle of writing the third label
        f.write(b'{"pair_id": "c", "choice": "le')
    with pytest.warns(RuntimeWarning, match="torn last line"):
        resumed = P.LabelStore(path)
    assert [r["pair_id"] for r in resumed.labels()] == ["a", "b"]
    assert path.read_bytes() == good, "the torn fragment is cut off"
    assert (tmp_path / "labels.jsonl.torn").read_bytes().startswith(b'{"pair_id": "c"')
    resumed.add("c", "left")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["pair_id"] for r in P.LabelStore(path).labels()] == ["a", "b", "c"]
    # A complete last record whose newline was lost is kept.
    path.write_bytes(good.rstrip(b"\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(P.LabelStore(path)) == 2
    assert path.read_bytes() == good


@pytest.mark.parametrize("bad", [b"not json", b'{"pair_id": "x"}', b'{"pair_id": "x", "choice": "up", "time": 1, "rater": "r"}'])
def test_label_store_malformed_middle_line_is_an_error(tmp_path, bad):
    path = tmp_path / "labels.jsonl"
    store = P.LabelStore(path)
    store.add("a", "left")
    lines = path.read_bytes()
    path.write_bytes(lines + bad + b"\n" + lines.replace(b'"a"', b'"b"'))
    with pytest.raises(P.LabelFileError, match=r"line 2: malformed"):
        P.LabelStore(path)


def test_label_store_failed_write_leaves_file_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "labels.jsonl"
    store = P.LabelStore(path)
    store.add("a", "left")
    before = path.read_bytes()

    def half_then_crash(fd, data):
        import os

        os.write(fd, data[: len(data) // 2])
        raise OSError("disk full")

    # LabelStore appends through lmlib._io.append_durably; its low-level write half-writes, then fails.
    monkeypatch.setattr(_io, "write_all", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        store.add("b", "right")
    assert path.read_bytes() == before and len(store) == 1, "all or nothing"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="JSON-serialisable"):
        store.add("b", "right", note=object())
    assert path.read_bytes() == before
    store.add("b", "right")
    assert [r["pair_id"] for r in P.LabelStore(path).labels()] == ["a", "b"]


# --------------------------------------------------------------------------- learning end to end


def test_mlp_learns_linear_reward_from_300_preferences():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    D, L = 6, 8
    w = rng.normal(size=D)
    segs = [feature_segment(rng, L=L, D=D, w=w) for _ in range(400)]
    rater = P.SyntheticRater(rng=0)
    train = rater.label(P.sample_pairs(segs[:300], 300, rng))
    held_out = rater.label(P.sample_pairs(segs[300:], 300, rng))  # unseen clips
    model = P.MLPRewardModel(in_dim=D, hidden=32)
    hist = P.train_reward_model(model, train, epochs=25, lr=3e-3, batch_size=32, seed=0, epsilon=0.1)
    assert hist["loss"][-1] < hist["loss"][0]
    agreement = P.evaluate_reward_model(model, held_out)["accuracy"]
    assert agreement > 0.85, f"held-out agreement {agreement:.3f}"


def test_token_segments_train_end_to_end():
    # An RLHF-style reward model on variable-length token sequences: the true reward counts token 3.
    rng = np.random.default_rng(0)
    segs = []
    for _ in range(60):
        toks = rng.integers(0, 6, size=rng.integers(3, 9))
        segs.append(P.Segment(toks, rewards=(toks == 3).astype(float)))
    ds = P.SyntheticRater(rng=0).label(P.sample_pairs(segs, 200, rng))
    model = P.MLPRewardModel(vocab_size=6, emb_dim=8, hidden=16, n_layers=1)
    hist = P.train_reward_model(model, ds, epochs=15, lr=1e-2, batch_size=32, seed=0, epsilon=0.0)
    assert hist["val_accuracy"][-1] > 0.85
    with pytest.raises(ValueError, match="out of range for vocab_size"):
        model(torch.tensor([[7]]))


def test_reward_model_interface_errors():
    with pytest.raises(ValueError, match="exactly one of"):
        P.MLPRewardModel()
    with pytest.raises(ValueError, match=r"must map inputs \(2, 3, 4\) to per-step rewards \(2, 3\)"):
        P.per_step_rewards(lambda x: x.sum(dim=(1, 2)), torch.zeros(2, 3, 4))
    assert P.per_step_rewards(lambda x: x[..., :1], torch.zeros(2, 3, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="at least 2 labelled pairs"):
        P.train_reward_model(P.MLPRewardModel(in_dim=2), P.PreferenceDataset())


# --------------------------------------------------------------------------- exercises


def test_exercises_pass_with_reference():
    for ex_id in ("ch11.preference_probability", "ch11.preference_loss", "ch11.select_queries"):
        assert check(ex_id, get(ex_id).reference, quiet=True).ok


def test_exercise_probability_rejects_wrong_answers():
    with pytest.raises(ExerciseFailed, match="epsilon = 0.1"):
        check("ch11.preference_probability", lambda a, b, eps: torch.sigmoid(a - b), quiet=True)  # forgot epsilon
    with pytest.raises(ExerciseFailed):
        check("ch11.preference_probability", lambda a, b, eps: (1 - eps) * torch.sigmoid(a - b) + eps, quiet=True)


def test_exercise_loss_rejects_wrong_answers():
    def swapped(left, right, mu, eps):  # labels read backwards
        p = (1 - eps) * torch.sigmoid(left.sum(1) - right.sum(1)) + eps / 2
        return -((1 - mu) * torch.log(p) + mu * torch.log(1 - p)).mean()

    def naive(left, right, mu, eps):  # right formula, but log(sigmoid) underflows
        p = (1 - eps) * torch.sigmoid(left.sum(1) - right.sum(1)) + eps / 2
        return -(mu * torch.log(p) + (1 - mu) * torch.log(1 - p)).mean()

    with pytest.raises(ExerciseFailed):
        check("ch11.preference_loss", swapped, quiet=True)
    with pytest.raises(ExerciseFailed, match="5/6 checks passed.*logsigmoid"):
        check("ch11.preference_loss", naive, quiet=True)


def test_exercise_select_rejects_wrong_answers():
    with pytest.raises(ExerciseFailed):  # least uncertain instead of most
        check("ch11.select_queries", lambda p, k: np.argsort(np.std(p, axis=0))[:k], quiet=True)
    with pytest.raises(ExerciseFailed):  # mean instead of spread
        check("ch11.select_queries", lambda p, k: np.argsort(-np.mean(p, axis=0))[:k], quiet=True)
    # torch.std (unbiased) ranks the same as numpy's population std: accepted.
    check("ch11.select_queries", lambda p, k: torch.argsort(-torch.tensor(p).std(0))[:k].numpy(), quiet=True)


# --------------------------------------------------------------------------- project rules


def test_no_environment_imports_and_docstrings():
    """The preference core (everything but preferences.agent) imports no gymnasium, widgets or model code."""
    imported = set()
    for module in (P, P.pairs, P.bradley_terry, P.scoring, P.reward_models, P.rankings, P.queries, P.label_store):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "datetime", "hashlib", "json", "math", "os", "warnings",
                        "dataclasses", "pathlib", "typing", "numpy", "torch", "lmlib"}, imported
    for name in P.__all__:
        obj = getattr(P, name)
        if callable(obj):
            doc = obj.__doc__ or ""
            assert ("Taught in: Chapter 11" in doc or "Taught in: Chapter 14" in doc and "built on Chapter 11" in doc), \
                f"{name} lacks 'Taught in'"
