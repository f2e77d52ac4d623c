"""PPO on tokens (lmlib.rlhf.ppo): per-token KL rewards worked by hand, the KL controllers, the response
outputs against lmlib's own token log-probabilities, a trainer that learns a planted preference on a tiny chat
GPT, and the over-optimisation fits on synthetic points."""
import math
import random

import numpy as np
import pytest
import torch

from lmlib.lm.decoding import generate_batch
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.losses import token_logprobs
from lmlib.rlhf.chat import Example, Turn
from lmlib.rlhf.ppo import (AdaptiveKLController, FixedKLController, PolicyWithValue, PPOConfig, RLHFTrainer,
                            fitting_prompts, loo_centre, overoptimisation_curve, overoptimisation_fit, response_outputs,
                            token_rewards)
from lmlib.rlhf.template import END, chat_tokenizer, format_prompt
from lmlib.text.tokenizer import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- token_rewards


def test_token_rewards_worked_example_from_the_docstring():
    rewards, kl = token_rewards(torch.tensor([1.0]), torch.tensor([[-1.0, -2.0, -3.0]]),
                                torch.tensor([[-1.5, -2.0, -2.0]]), torch.ones(1, 3, dtype=torch.bool), 0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, -1.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.0, 1.1]]))


def test_token_rewards_put_the_score_on_each_rows_last_real_token_and_zero_on_padding():
    lp = torch.tensor([[-1.0, -1.0, -1.0, 0.0], [-2.0, 0.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.2, -0.5, -1.0, 7.0], [-1.0, 3.0, 3.0, 3.0]])  # padding holds junk
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    rewards, kl = token_rewards(torch.tensor([2.0, -1.0]), lp, ref, mask, 0.5)
    # row 0: kl = [0.2, -0.5, 0], score on token 2; row 1: kl = [-1], score on token 0
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 0.25, 2.0, 0.0], [0.5 - 1.0, 0.0, 0.0, 0.0]]))
    assert kl[0, 3] == 0 and kl[1, 1:].abs().sum() == 0
    # summed over the answer: score - beta * KL
    torch.testing.assert_close(rewards.sum(1), torch.tensor([2.0, -1.0]) - 0.5 * kl.sum(1))
    # k3 is never negative
    _, k3 = token_rewards(torch.tensor([2.0, -1.0]), lp, ref, mask, 0.5, kind="k3")
    assert (k3 >= 0).all() and k3[0, 1] == pytest.approx(math.exp(0.5) - 1 - 0.5)


def test_token_rewards_reject_bad_input_by_name():
    lp, ref, m = torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="right-padded"):
        token_rewards(torch.zeros(2), lp, ref, torch.tensor([[1, 0, 1], [1, 1, 1]]), 0.1)
    with pytest.raises(ValueError, match="no real token"):
        token_rewards(torch.zeros(2), lp, ref, torch.tensor([[0, 0, 0], [1, 1, 1]]), 0.1)
    with pytest.raises(ValueError, match="scores must be a"):
        token_rewards(torch.zeros(3), lp, ref, m, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        token_rewards(torch.tensor([0.0, float("nan")]), lp, ref, m, 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        token_rewards(torch.zeros(2), lp, ref, m, -0.1)
    with pytest.raises(ValueError, match="ref_logprobs"):
        token_rewards(torch.zeros(2), lp, torch.full((2, 3), float("inf")), m, 0.1)


# ----------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_worked_example_and_direction():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert ctl.update(9.0, 256) == pytest.approx(0.1005120)  # error 0.5 clipped to 0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert ctl.update(5.4, 1000) == pytest.approx(0.1 * (1 - 0.1 * 0.1))  # error -0.1: beta falls
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    for _ in range(200):  # a policy that stays at KL 12 makes beta grow geometrically, 2% per batch here
        ctl.update(12.0, 10)
    assert ctl.value == pytest.approx(0.1 * 1.02**200)
    assert FixedKLController(0.3).update(100.0, 64) == 0.3
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0)
    with pytest.raises(ValueError, match="current_kl"):
        AdaptiveKLController(0.1, 6.0).update(float("nan"), 1)


def test_a_simulated_policy_whose_kl_follows_beta_settles_at_the_target():
    """KL = 1 / beta (more penalty, less drift): the controller finds beta = 1 / target."""
    ctl = AdaptiveKLController(1.0, target=4.0, horizon=200)
    for _ in range(3000):
        ctl.update(1.0 / ctl.value, 16)
    assert 1.0 / ctl.value == pytest.approx(4.0, rel=0.02)


# ----------------------------------------------------------------------------- a tiny chat world

CHARS = "abxy?"
_BASE = CharTokenizer.train(CHARS)


@pytest.fixture(scope="module")
def tok():
    return chat_tokenizer(_BASE)


def tiny_gpt(tok, seed=0, block_size=32):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=32,
                         bias=False)).eval()


def _examples(n):
    rng = random.Random(0)
    return [Example(id=str(i), category="benign", turns=(Turn("user", "".join(rng.choice("ab") for _ in
                                                                               range(rng.randint(1, 4))) + "?"),),
                    answer="x") for i in range(n)]


def test_response_outputs_match_lmlibs_token_logprobs_and_the_sampler(tok):
    gpt = tiny_gpt(tok)
    prompts = [tok.encode(format_prompt(e)) for e in _examples(5)]
    gen = generate_batch(gpt, prompts, 6, eos_id=tok.stoi[END], pad_id=tok.stoi[END],
                         generator=torch.Generator().manual_seed(0))
    P = gen.prompt_mask.shape[1]
    mask = torch.cat([gen.prompt_mask, gen.response_mask], 1)
    lp, values, ent = response_outputs(gpt, gen.tokens, mask, P)
    assert values is None and lp.shape == ent.shape == gen.response.shape
    ref, _ = token_logprobs(gpt, gen.tokens, mask)
    m = gen.response_mask
    torch.testing.assert_close(lp[m], ref[:, P:][m], atol=1e-5, rtol=0)
    torch.testing.assert_close(lp[m], gen.logprobs[m], atol=1e-4, rtol=0)  # what the sampler recorded
    assert (ent[m] >= 0).all() and (ent[m] <= math.log(tok.vocab_size) + 1e-5).all()
    policy = PolicyWithValue(gpt)
    lp2, v, _ = policy(gen.tokens, mask, P)
    torch.testing.assert_close(lp2, lp)
    assert v.shape == lp.shape and (v == 0).all()  # the value head starts at zero
    with pytest.raises(ValueError, match="prompt_width"):
        response_outputs(gpt, gen.tokens, mask, gen.tokens.shape[1])
    with pytest.raises(ValueError, match="block_size"):
        long = torch.zeros(1, 40, dtype=torch.long)
        response_outputs(gpt, long, torch.ones_like(long, dtype=torch.bool), 5)


def test_fitting_prompts_keeps_what_fits_with_a_full_answer(tok):
    exs = _examples(30)
    kept = fitting_prompts(exs, tok, block_size=14, max_new_tokens=10)
    room = 14 + 1 - 10
    assert kept and len(kept) < len(exs)
    assert all(len(tok.encode(format_prompt(e))) <= room for e in kept)
    assert all(len(tok.encode(format_prompt(e))) > room for e in exs if e not in kept)
    with pytest.raises(ValueError, match="no room"):
        fitting_prompts(exs, tok, block_size=16, max_new_tokens=16)


def _count_x(examples, answers, ended):
    """The planted preference: the share of 'x' in the answer, plus 0.5 for ending it."""
    return [a.count("x") / max(len(a), 1) + 0.5 * e for a, e in zip(answers, ended)]


def test_ppo_learns_a_planted_preference_and_the_kl_penalty_holds_it_back(tok):
    """PPO raises the reward of a tiny random chat GPT; the KL to the reference starts at 0, grows, and a large
    beta keeps it smaller. The reference model never changes."""
    exs = _examples(64)
    results = {}
    for beta in (0.0, 1.0):
        ref = tiny_gpt(tok)
        ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
        cfg = PPOConfig(batch_size=32, minibatch_size=8, ppo_epochs=4, lr=3e-3, max_new_tokens=8, kl_coef=beta)
        tr = RLHFTrainer(PolicyWithValue(ref), ref, tok, _count_x, cfg, gold_fn=_count_x, seed=0)
        rng = random.Random(1)
        for _ in range(12):
            tr.step(rng.sample(exs, 32))
        h = tr.history
        assert h[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # policy == ref at the first rollout
        assert all(torch.equal(ref.state_dict()[k], v) for k, v in ref_state.items())
        assert h[0]["gold"] == h[0]["score"]
        results[beta] = (np.mean([r["score"] for r in h[:2]]), np.mean([r["score"] for r in h[-3:]]),
                         np.mean([r["kl"] for r in h[-3:]]))
        print(f"beta {beta}: score {results[beta][0]:.3f} -> {results[beta][1]:.3f}, KL {results[beta][2]:.2f}")
    start, end, kl_free = results[0.0]
    assert end > start + 0.2, results
    assert results[1.0][2] < kl_free, results


def test_ppo_ptx_mixes_the_pretraining_loss_and_needs_its_batches(tok):
    gpt = tiny_gpt(tok)
    cfg = PPOConfig(batch_size=8, minibatch_size=4, ppo_epochs=1, max_new_tokens=4, ptx_coef=1.0)
    with pytest.raises(ValueError, match="ptx_batch_fn"):
        RLHFTrainer(PolicyWithValue(gpt), gpt, tok, _count_x, cfg)
    text = torch.tensor(tok.encode("abxyab?" * 20))

    def ptx(generator):
        i = torch.randint(0, len(text) - 17, (4,), generator=generator)
        return torch.stack([text[j:j + 16] for j in i]), torch.stack([text[j + 1:j + 17] for j in i])

    tr = RLHFTrainer(PolicyWithValue(gpt), gpt, tok, _count_x, cfg, ptx_batch_fn=ptx)
    rec = tr.step(_examples(8))
    assert rec["ptx_loss"] > 0 and math.isfinite(rec["ptx_loss"])


def test_trainer_rejects_bad_setups(tok):
    gpt = tiny_gpt(tok, block_size=16)
    with pytest.raises(ValueError, match="separate"):
        policy = PolicyWithValue(gpt, copy_model=False)
        RLHFTrainer(policy, gpt, tok, _count_x)
    tr = RLHFTrainer(PolicyWithValue(gpt), gpt, tok, _count_x, PPOConfig(batch_size=4, minibatch_size=2,
                                                                         max_new_tokens=12))
    long = Example(id="L", category="benign", turns=(Turn("user", "ab" * 10 + "?"),), answer="x")
    with pytest.raises(ValueError, match="fitting_prompts"):
        tr.rollout([long] * 4)
    bad = RLHFTrainer(PolicyWithValue(gpt), gpt, tok, lambda e, a, d: [float("nan")] * len(a),
                      PPOConfig(batch_size=4, minibatch_size=2, max_new_tokens=4))
    with pytest.raises(ValueError, match="NaN"):
        bad.rollout(_examples(4))
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(batch_size=10, minibatch_size=4)


# ----------------------------------------------------------------------------- over-optimisation fits


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_overoptimisation_fit_recovers_known_coefficients(form):
    d = np.linspace(0.1, 4.0, 25)
    y = overoptimisation_curve(d, 0.3, 0.08, form)
    fit = overoptimisation_fit(d, y, form)
    assert fit["alpha"] == pytest.approx(0.3) and fit["beta"] == pytest.approx(0.08) and fit["r2"] == pytest.approx(1)
    peak = 0.3 / (2 * 0.08) if form == "bon" else math.exp(0.3 / 0.08 - 1)
    assert fit["d_peak"] == pytest.approx(peak)
    dd = np.linspace(0.01, 3 * peak, 2001)
    assert fit["gain_peak"] == pytest.approx(overoptimisation_curve(dd, 0.3, 0.08, form).max(), rel=1e-4)
    noisy = y + np.random.default_rng(0).normal(0, 0.01, y.shape)
    assert overoptimisation_fit(d, noisy, form)["r2"] > 0.9
    flat = overoptimisation_fit(d, np.random.default_rng(1).normal(0, 0.05, d.shape), form)
    assert flat["r2"] < 0.5  # noise is not a curve


def test_overoptimisation_fit_worked_by_hand_and_errors():
    # gain = d (1 - 0.5 d) at d = 0, 1, 2: 0, 0.5, 0; peak at d = 1
    fit = overoptimisation_fit([0.0, 1.0, 2.0], [0.0, 0.5, 0.0], "bon")
    assert fit["alpha"] == pytest.approx(1.0) and fit["beta"] == pytest.approx(0.5) and fit["d_peak"] == pytest.approx(1.0)
    assert overoptimisation_fit([1, 2, 3], [1, 2, 3], "bon")["beta"] == pytest.approx(0, abs=1e-12)
    assert overoptimisation_fit([1, 2, 3], [1, 2, 4], "bon")["d_peak"] is None  # rising faster: no peak
    with pytest.raises(ValueError, match="form"):
        overoptimisation_fit([1, 2, 3], [1, 2, 3], "ppo")
    with pytest.raises(ValueError, match="negative KL"):
        overoptimisation_fit([-1, 2, 3], [1, 2, 3], "rl")
    with pytest.raises(ValueError, match="finite"):
        overoptimisation_fit([1, 2, np.nan], [1, 2, 3], "rl")
    with pytest.raises(ValueError, match="length"):
        overoptimisation_fit([1, 2], [1, 2], "rl")


def test_a_detached_value_head_never_moves_the_policy_and_warmup_fits_it(tok):
    gpt = tiny_gpt(tok)
    exs = _examples(16)
    policy = PolicyWithValue(gpt)  # detach_value=True
    tr = RLHFTrainer(policy, gpt, tok, _count_x, PPOConfig(batch_size=16, minibatch_size=8, max_new_tokens=6))
    ro = tr.rollout(exs)
    _, v, _ = policy(ro.tokens, ro.mask, ro.prompt_width)
    (v * ro.response_mask).sum().backward()
    assert all(p.grad is None for p in policy.gpt.parameters())
    assert policy.value_head.weight.grad is not None
    shared = PolicyWithValue(gpt, detach_value=False)
    torch.nn.init.normal_(shared.value_head.weight)  # a zero head passes no gradient to anything
    _, v, _ = shared(ro.tokens, ro.mask, ro.prompt_width)
    (v * ro.response_mask).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shared.gpt.parameters())
    # warmup: a closed-form probe of the returns; the head no longer predicts 0
    info = tr.warmup_values([exs, exs])
    assert info["positions"] > 16 and 0 < info["explained_variance_fit"] <= 1
    ro2 = tr.rollout(exs)
    assert ro2.values[ro2.response_mask].abs().sum() > 0
    with pytest.raises(ValueError, match="detach_value"):
        RLHFTrainer(PolicyWithValue(gpt, detach_value=False), gpt, tok, _count_x,
                    PPOConfig(batch_size=4, minibatch_size=2, max_new_tokens=4)).warmup_values([exs[:4]])


def test_leave_one_out_baseline_worked_example_and_in_the_trainer(tok):
    got = loo_centre(torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0]), list("aaabb"))
    torch.testing.assert_close(got, torch.tensor([-1.5, 0.0, 1.5, -2.0, 2.0]))
    assert loo_centre(torch.tensor([4.0, 4.0]), ["x", "x"]).abs().sum() == 0  # equal answers: no signal
    with pytest.raises(ValueError, match="at least 2 answers per prompt"):
        loo_centre(torch.tensor([1.0, 2.0, 3.0]), ["a", "a", "b"])
    with pytest.raises(ValueError, match="groups"):
        loo_centre(torch.tensor([1.0, 2.0]), ["a"])
    gpt = tiny_gpt(tok)
    exs = _examples(4) * 2
    cfg = PPOConfig(batch_size=8, minibatch_size=4, max_new_tokens=6, kl_coef=0.0, loo_baseline=True)
    tr = RLHFTrainer(PolicyWithValue(gpt), gpt, tok, _count_x, cfg)
    ro = tr.rollout(exs)
    # with beta = 0 the rewards of an answer sum to its centred score, and the centred scores of a prompt sum to 0
    centred = ro.rewards.sum(1)
    torch.testing.assert_close(centred, loo_centre(ro.scores, [e.id for e in exs]))
    torch.testing.assert_close(centred[:4] + centred[4:], torch.zeros(4), atol=1e-6, rtol=0)
