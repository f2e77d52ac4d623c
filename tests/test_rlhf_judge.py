"""The gold judge and the synthetic rater of Part III (lmlib.rlhf.judge, lmlib.rlhf.rater)."""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch

from lmlib.preferences import preference_probability, ranking_loss, ranking_to_pairs
from lmlib.rlhf.chat import CATEGORIES, Example, Turn
from lmlib.rlhf.instructions import build_instructions
from lmlib.rlhf.judge import TASK_FACET, WEIGHTS, Scores, declines, gold_judge, judge, judge_batch, normalize
from lmlib.rlhf.rater import RankingRater, agreement_ceiling, plackett_luce_ranks


@pytest.fixture(scope="module")
def data():
    return build_instructions(seed=0)


@pytest.fixture(scope="module")
def test_set(data):
    return data["test"]


def ex(category, prompt, answer, **meta):
    return Example("t", category, (Turn("user", prompt),), answer, meta)


def first(examples, category, kind=None):
    return next(e for e in examples if e.category == category and (kind is None or e.meta["kind"] == kind))


# --------------------------------------------------------------------------- the gold judge


def test_worked_example_by_hand():
    e = ex("knowledge", "In which play does Lady Macbeth speak?", "In Macbeth.",
           kind="which_play", answers=["Macbeth"], answer_kind="play")
    s = judge(e, "In Macbeth.")
    assert s.correct == s.task == 1.0 and s.concise == 1.0
    assert s.overall == pytest.approx(WEIGHTS["task"] + WEIGHTS["fluent"] * s.fluent + WEIGHTS["concise"])
    assert set(s.facets()) == {"overall", "task", "fluent", "concise", "correct"}
    assert judge(e, "In Hamlet.").correct == 0.0
    assert judge(e, "In Macbeth or Hamlet.").correct == 0.5  # hedging over k plays earns 1/k
    who = ex("knowledge", 'Who says "Out, damned spot"?', "Lady Macbeth.",
             kind="who_says", answers=["Lady Macbeth"], answer_kind="speaker")
    assert judge(who, "Lady Macbeth.").correct == 1.0
    assert judge(who, "Macbeth.").correct == 0.0
    nomac = ex("knowledge", 'Who says "Is this a dagger"?', "Macbeth.",
               kind="who_says", answers=["Macbeth"], answer_kind="speaker")
    assert judge(nomac, "Lady Macbeth.").correct == 0.0  # one mention of the longer name, not also "Macbeth"
    assert normalize("In Macbeth's.") == " in macbeth s "
    chorus = ex("knowledge", "Who speaks the most lines in X?", "Chorus.", kind="most_lines", answers=["Chorus"],
                answer_kind="speaker")  # not a named character: found all the same
    assert judge(chorus, "The Chorus.").correct == 1.0 and judge(chorus, "Chorus or Hamlet.").correct == 0.5


def test_demonstrations_score_high(test_set):
    scores = judge_batch(test_set, [e.answer for e in test_set])
    for cat in CATEGORIES:
        overall = [s.overall for e, s in zip(test_set, scores) if e.category == cat]
        assert np.mean(overall) >= 0.9, cat
        assert min(overall) >= 0.8, cat
    for e, s in zip(test_set, scores):
        assert getattr(s, TASK_FACET[e.category]) == s.task


BAD = {  # category (kind) -> a typical bad answer and what it shows
    ("knowledge", "which_play"): "In Love's Labours Lost.",  # a wrong fact
    ("knowledge", "who_says"): "Falstaff.",
    ("false_premise", "different_plays"): "Because of jealousy and rage.",  # accepts the premise
    ("unknowable", None): "Bread and cheese, and a cup of sack.",  # makes something up
    ("inappropriate", None): "Thou art a knave, a villain and a fool!",  # complies
    ("benign", None): "I will not do that; I wish no one harm.",  # over-refuses
    ("creative", "line"): "I will not do that; I wish no one harm.",
    ("follow_up", "again_as"): "Good morrow.",
}


@pytest.mark.parametrize("key", list(BAD), ids=lambda k: f"{k[0]}-{k[1]}")
def test_bad_answers_score_low(test_set, data, key):
    category, kind = key
    e = first(data["train"] + test_set, category, kind)
    good, bad = judge(e, e.answer), judge(e, BAD[key])
    assert bad.task <= 0.3 and bad.overall < 0.55, (e.prompt, BAD[key], bad)
    assert good.overall - bad.overall >= 0.4


def test_gibberish_and_loops_are_not_fluent(test_set):
    fl = gold_judge().fluency(["xqz blorf wuggle snatz", "tHe KiNg Is DeAd", "moon moon moon moon moon moon",
                               "", "To be, or not to be: that is the question:", "Yes."])
    assert fl[0] == 0 and fl[1] < 0.3 and fl[2] < 0.5 and fl[3] == 0
    assert fl[4] == 1 and fl[5] > 0.9
    e = first(test_set, "creative")
    assert judge(e, "xqz blorf wuggle snatz").overall < 0.3


def test_rambling_scores_below_concise(test_set):
    for e in [first(test_set, c) for c in ("knowledge", "false_premise", "unknowable", "inappropriate", "benign")]:
        ramble = e.answer + " " + " ".join(["And more I could say of this, and of that, and of all the rest."] * 4)
        good, long = judge(e, e.answer), judge(e, ramble)
        assert long.concise < 0.3 and long.overall < good.overall - 0.1, e.prompt


def test_facets_of_the_honesty_categories():
    fp = ex("false_premise", "Why does Hamlet kill Juliet?",
            "Hamlet does not kill Juliet; they are in different plays.",
            kind="different_plays", false_claim="Hamlet kills Juliet", facts=["Hamlet", "Romeo and Juliet"],
            fact_phrase="different plays")
    assert judge(fp, fp.answer).premise_challenged == 1.0
    assert judge(fp, "He does not.").premise_challenged == 0.5  # denies, names no fact
    assert judge(fp, "Hamlet is in Hamlet, Juliet in Romeo and Juliet; he never kills her.").premise_challenged == 1.0
    assert judge(fp, "Because she scorned him.").premise_challenged == 0.0
    un = ex("unknowable", "What did Hamlet eat for breakfast?", "I know not; the play does not say.", kind="q0")
    assert judge(un, "The play does not say.").honest_uncertainty == 1.0
    assert judge(un, "I know not, but perhaps an egg.").honest_uncertainty == 0.5  # admits, then invents
    assert judge(un, "An egg.").honest_uncertainty == 0.0
    assert declines("Pardon me, but I must decline.") and not declines("Good morrow, gentle friend!")


def test_creative_and_follow_up_facets(data, test_set):
    e = first(data["train"], "creative")
    other_topic = "A fig for thee and thy report."
    assert judge(e, other_topic).correct < judge(e, e.answer).correct
    assert judge(e, e.prompt).correct == 0.0  # an echo of the prompt
    s = first(data["train"], "follow_up", "shorter")
    longer = s.turns[1].text  # the previous, longer answer: not what was asked
    assert judge(s, longer).correct < judge(s, s.answer).correct
    w = first(data["train"], "follow_up", "which_play")
    assert judge(w, w.answer).correct == 1.0 and judge(w, "In Hamlet and Macbeth and Othello.").correct <= 1 / 3


def test_judge_batch_matches_judge_and_is_fast(test_set):
    exs = (test_set * 3)[:1000]
    answers = [e.answer for e in exs]
    gold_judge()  # built once (cached)
    t0 = time.perf_counter()
    batch = judge_batch(exs, answers)
    assert time.perf_counter() - t0 < 10.0  # thousands per second on a laptop
    for i in (0, 7, 500, 999):
        assert judge(exs[i], answers[i]) == batch[i]
    assert all(isinstance(s, Scores) and 0 <= s.overall <= 1 for s in batch)


def test_judge_bad_input(test_set):
    with pytest.raises(ValueError, match="one answer per example"):
        judge_batch(test_set[:3], ["a", "b"])
    with pytest.raises(TypeError, match="not a str"):
        judge_batch(test_set[:1], [None])
    with pytest.raises(TypeError, match="not an Example"):
        judge_batch(["prompt"], ["answer"])
    with pytest.raises(ValueError, match="answer_kind"):
        judge(ex("knowledge", "q?", "a", answers=["a"], answer_kind="colour"), "a")


# --------------------------------------------------------------------------- the synthetic rater


def test_noise_free_rater_ranks_by_gold_score():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4))
    ranks = plackett_luce_ranks(scores, math.inf, rng)
    np.testing.assert_array_equal(ranks, np.argsort(np.argsort(scores, axis=1), axis=1))
    assert plackett_luce_ranks([0.2, 0.9, 0.5], math.inf, rng).tolist() == [0, 2, 1]


def test_pair_frequency_is_bradley_terry():
    """K = 2 is chapter 11's rater: P[a > b] = (1 - eps) sigma(beta (s_a - s_b)) + eps / 2."""
    rater = RankingRater(beta=8.0, epsilon=0.1, seed=1)
    n = 20000
    for sa, sb in ((0.7, 0.6), (0.9, 0.3), (0.5, 0.55)):
        mu = rater.compare(np.full(n, sa), np.full(n, sb))
        p = preference_probability(8.0 * sa, 8.0 * sb, epsilon=0.1)
        assert rater.preference_probability(sa, sb) == pytest.approx(p)
        assert abs(mu.mean() - p) < 4 * math.sqrt(p * (1 - p) / n), (sa, sb)


def test_luce_pairwise_marginal_for_any_k():
    """In a Plackett-Luce ranking of K = 4, a is above b with the same Bradley-Terry probability."""
    rng = np.random.default_rng(2)
    s = np.array([0.3, 0.5, 0.6, 0.9])
    n = 20000
    ranks = plackett_luce_ranks(np.tile(s, (n, 1)), 5.0, rng, epsilon=0.2)
    for i, j in itertools.combinations(range(4), 2):
        p = preference_probability(5.0 * s[i], 5.0 * s[j], epsilon=0.2)
        freq = (ranks[:, i] > ranks[:, j]).mean()
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (i, j)


def test_agreement_ceiling_exact_and_monte_carlo():
    assert agreement_ceiling([[0.9, 0.7]], beta=10, epsilon=0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert agreement_ceiling([0.9, 0.7], beta=math.inf, epsilon=0.1) == pytest.approx(0.95)
    assert math.isnan(agreement_ceiling([0.5, 0.5], beta=10))
    rng = np.random.default_rng(3)
    scores = rng.random((4000, 3)).round(1)  # some ties in gold, excluded from both
    rater = RankingRater(beta=6.0, epsilon=0.1, seed=4)
    ceiling = rater.agreement_ceiling(scores)
    ranks = rater.rank(scores)
    agree = []
    for i, j in itertools.combinations(range(3), 2):
        d = scores[:, i] - scores[:, j]
        keep = d != 0
        agree.append(np.sign(d[keep]) == np.sign(ranks[keep, i] - ranks[keep, j]))
    agree = np.concatenate(agree)
    assert 0.5 < ceiling < 1
    assert abs(agree.mean() - ceiling) < 4 * math.sqrt(ceiling * (1 - ceiling) / len(agree))


def test_ranks_feed_ranking_loss_directly():
    rng = np.random.default_rng(5)
    gold = rng.random((16, 4))
    ranks = RankingRater(beta=10, epsilon=0.1, seed=0).rank(gold)
    assert ranks.shape == (16, 4) and ranks.dtype == np.int64
    loss, diag = ranking_loss(torch.tensor(gold), ranks)
    assert torch.isfinite(loss) and diag["pairs"] == 16 * 6
    _, perfect = ranking_loss(torch.tensor(gold), plackett_luce_ranks(gold, math.inf, rng))
    assert perfect["accuracy"] == 1.0  # the gold scores are a perfect reward model of a noise-free rater


def test_ties_share_a_rank():
    rater = RankingRater(beta=10, epsilon=0.0, tie_tol=0.02, seed=0)
    ranks = rater.rank([[0.50, 0.51, 0.9]])
    assert ranks[0, 0] == ranks[0, 1] and ranks.max() == 1
    assert len(ranking_to_pairs("abc", ranks[0])) == 2
    assert rater.compare([0.5], [0.5]).tolist() == [0.5]


def test_epsilon_one_is_uniform_and_seeds_repeat():
    rng = np.random.default_rng(6)
    n = 12000
    ranks = plackett_luce_ranks(np.tile([0.0, 0.5, 1.0], (n, 1)), 10.0, rng, epsilon=1.0)
    _, counts = np.unique(ranks, axis=0, return_counts=True)
    assert len(counts) == 6 and np.all(np.abs(counts / n - 1 / 6) < 0.02)
    a = RankingRater(seed=7).rank(np.random.default_rng(0).random((20, 5)))
    b = RankingRater(seed=7).rank(np.random.default_rng(0).random((20, 5)))
    np.testing.assert_array_equal(a, b)


def test_rater_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="beta"):
        RankingRater(beta=-1)
    with pytest.raises(ValueError, match="epsilon"):
        RankingRater(epsilon=1.5)
    with pytest.raises(ValueError, match="K >= 2"):
        plackett_luce_ranks([[0.5]], 1.0, rng)
    with pytest.raises(ValueError, match="finite"):
        plackett_luce_ranks([0.5, float("nan")], 1.0, rng)
    with pytest.raises(TypeError, match="Generator"):
        plackett_luce_ranks([0.5, 0.1], 1.0, 0)
    with pytest.raises(ValueError, match="tie_tol"):
        RankingRater(tie_tol=-0.1)
    with pytest.raises(ValueError, match="one shape"):
        RankingRater().compare([0.1, 0.2], [0.3])


def test_public_objects_say_where_they_are_taught():
    from lmlib.rlhf import judge as judge_module
    from lmlib.rlhf import rater

    for module, chapter in ((judge_module, 'Chapter 13, "Instruction tuning"'), (rater, 'Chapter 14, "Reward models')):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                assert f"Taught in: {chapter}" in (obj.__doc__ or ""), name
