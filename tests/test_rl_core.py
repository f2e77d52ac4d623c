"""lmlib.rl: returns, GAE, PPO losses, rollout buffer and policies (no gymnasium anywhere)."""
import ast
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Normal

import lmlib.rl as rl
from lmlib.exercises import ExerciseFailed, check

DOUBLE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def rollout(seed: int, T: int, N: int, p_done: float = 0.2, dtype=DOUBLE):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=dtype)
    values = torch.randn(T, N, generator=g, dtype=dtype)
    dones = (torch.rand(T, N, generator=g) < p_done).to(dtype)
    next_value = torch.randn(N, generator=g, dtype=dtype)
    next_done = (torch.rand(N, generator=g) < p_done).to(dtype)
    return rewards, values, dones, next_value, next_done


def returns_loop(rewards, dones, gamma, next_value, next_done):
    """Reward-to-go by the definition, one env and one step at a time (Python floats)."""
    T, N = rewards.shape
    out = torch.zeros_like(rewards)
    for n in range(N):
        running, nonterminal = float(next_value[n]), 1.0 - float(next_done[n])
        for t in reversed(range(T)):
            running = float(rewards[t, n]) + gamma * nonterminal * running
            out[t, n] = running
            nonterminal = 1.0 - float(dones[t, n])  # for step t - 1: did obs[t] start a new episode?
    return out


# ----------------------------------------------------------------------------- GAE, worked by hand


def test_gae_hand_worked_example():
    # T=3, one env, gamma=0.9, lam=0.8 (gamma*lam = 0.72), no episode ends, next_done=0:
    #   rewards = [1, 0, 2], values = [0.5, 0.4, 0.3], next_value = 0.2
    #   delta_2 = 2 + 0.9*0.2 - 0.3 = 1.88
    #   delta_1 = 0 + 0.9*0.3 - 0.4 = -0.13
    #   delta_0 = 1 + 0.9*0.4 - 0.5 = 0.86
    #   A_2 = 1.88
    #   A_1 = -0.13 + 0.72*1.88   = 1.2236
    #   A_0 = 0.86  + 0.72*1.2236 = 1.740992
    #   returns = A + V = [2.240992, 1.6236, 2.18]
    r = torch.tensor([[1.0], [0.0], [2.0]], dtype=DOUBLE)
    v = torch.tensor([[0.5], [0.4], [0.3]], dtype=DOUBLE)
    args = (r, v, torch.zeros(3, 1), torch.tensor([0.2]), torch.tensor([0.0]), 0.9, 0.8)
    for fn in (rl.gae, rl.gae_loop):
        adv, ret = fn(*args)
        assert torch.allclose(adv.flatten(), torch.tensor([1.740992, 1.2236, 1.88], dtype=DOUBLE), atol=1e-6)
        assert torch.allclose(ret.flatten(), torch.tensor([2.240992, 1.6236, 2.18], dtype=DOUBLE), atol=1e-6)
    # Same rollout, but dones[2] = 1: obs[2] starts a new episode, so step 1 ended one.
    #   delta_1 = 0 - 0.4 = -0.4 (no bootstrap);  A_1 = -0.4 (nothing flows back across the boundary)
    #   A_0 = 0.86 + 0.72*(-0.4) = 0.572;  A_2 = 1.88 as before
    args = (r, v, torch.tensor([[0.0], [0.0], [1.0]]), torch.tensor([0.2]), torch.tensor([0.0]), 0.9, 0.8)
    for fn in (rl.gae, rl.gae_loop):
        adv, _ = fn(*args)
        assert torch.allclose(adv.flatten(), torch.tensor([0.572, -0.4, 1.88], dtype=DOUBLE), atol=1e-6)


def test_discounted_returns_hand_worked():
    # rewards 1,1,1 with gamma 0.5: G = [1.75, 1.5, 1]; with dones[1]=1 (step 0 ends an episode): [1, 1.5, 1]
    ones = torch.ones(3, 1)
    assert torch.allclose(rl.discounted_returns(ones, torch.zeros(3, 1), 0.5).flatten(), torch.tensor([1.75, 1.5, 1.0]))
    assert torch.allclose(rl.discounted_returns(ones, torch.tensor([[0.0], [1.0], [0.0]]), 0.5).flatten(),
                          torch.tensor([1.0, 1.5, 1.0]))
    # dones[0] says nothing about this rollout; bootstrapping adds gamma^k * next_value unless next_done
    assert torch.allclose(rl.discounted_returns(ones, torch.tensor([[1.0], [0.0], [0.0]]), 0.5).flatten(),
                          torch.tensor([1.75, 1.5, 1.0]))
    boot = rl.discounted_returns(ones, torch.zeros(3, 1), 0.5, next_value=torch.tensor([8.0]), next_done=torch.tensor([0.0]))
    assert torch.allclose(boot.flatten(), torch.tensor([2.75, 3.5, 5.0]))
    cut = rl.discounted_returns(ones, torch.zeros(3, 1), 0.5, next_value=torch.tensor([8.0]), next_done=torch.tensor([1.0]))
    assert torch.allclose(cut.flatten(), torch.tensor([1.75, 1.5, 1.0]))
    # a single environment as a 1-D rollout
    assert torch.allclose(rl.discounted_returns(torch.ones(3), torch.zeros(3), 0.5), torch.tensor([1.75, 1.5, 1.0]))


# ----------------------------------------------------------------------------- GAE, properties

shapes = st.tuples(st.integers(1, 70), st.integers(1, 5), st.floats(0.0, 0.6), st.integers(0, 10**6))
coefs = st.floats(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(shapes, coefs, coefs)
def test_gae_vectorised_matches_loop(shape, gamma, lam):
    T, N, p_done, seed = shape
    args = rollout(seed, T, N, p_done)
    adv, ret = rl.gae(*args, gamma, lam)
    adv_loop, ret_loop = rl.gae_loop(*args, gamma, lam)
    assert adv.shape == ret.shape == (T, N)
    torch.testing.assert_close(adv, adv_loop, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ret, ret_loop, rtol=1e-10, atol=1e-10)


def test_gae_float32_long_rollout_matches_loop():
    args = rollout(1, 2048, 4, 0.01, dtype=torch.float32)
    adv, _ = rl.gae(*args, 0.99, 0.95)
    adv_loop, _ = rl.gae_loop(*args, 0.99, 0.95)
    torch.testing.assert_close(adv, adv_loop, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(shapes, coefs)
def test_returns_match_plain_loop(shape, gamma):
    T, N, p_done, seed = shape
    rewards, _, dones, next_value, next_done = rollout(seed, T, N, p_done)
    got = rl.discounted_returns(rewards, dones, gamma, next_value, next_done)
    torch.testing.assert_close(got, returns_loop(rewards, dones, gamma, next_value, next_done))
    no_boot = rl.discounted_returns(rewards, dones, gamma)
    torch.testing.assert_close(no_boot, returns_loop(rewards, dones, gamma, torch.zeros(N), torch.ones(N)))


@settings(max_examples=40, deadline=None)
@given(shapes, coefs)
def test_gae_lambda_one_is_returns_minus_values(shape, gamma):
    T, N, p_done, seed = shape
    rewards, values, dones, next_value, next_done = rollout(seed, T, N, p_done)
    adv, ret = rl.gae(rewards, values, dones, next_value, next_done, gamma, 1.0)
    mc = rl.discounted_returns(rewards, dones, gamma, next_value, next_done)
    torch.testing.assert_close(adv, mc - values)
    torch.testing.assert_close(ret, mc)


@settings(max_examples=40, deadline=None)
@given(shapes, coefs)
def test_gae_lambda_zero_is_td_error(shape, gamma):
    T, N, p_done, seed = shape
    rewards, values, dones, next_value, next_done = rollout(seed, T, N, p_done)
    adv, _ = rl.gae(rewards, values, dones, next_value, next_done, gamma, 0.0)
    nextvalues = torch.cat([values[1:], next_value[None]])
    nonterminal = 1.0 - torch.cat([dones[1:], next_done[None]])
    torch.testing.assert_close(adv, rewards + gamma * nextvalues * nonterminal - values)


def test_gae_accepts_cleanrl_shapes_and_rejects_wrong_ones():
    rewards, values, dones, next_value, next_done = rollout(0, 5, 3)
    expected = rl.gae(rewards, values, dones, next_value, next_done)
    for nv in (next_value.reshape(1, 3), next_value.reshape(3, 1)):  # CleanRL's .reshape(1, -1); a (N, 1) value head
        torch.testing.assert_close(rl.gae(rewards, values, dones, nv, next_done.bool()), expected)
    with pytest.raises(ValueError, match=r"next_value has shape \(4,\).*one entry per environment"):
        rl.gae(rewards, values, dones, torch.zeros(4), next_done)
    with pytest.raises(ValueError, match=r"values has shape \(5, 1\)"):
        rl.gae(rewards, values[:, :1], dones, next_value, next_done)
    with pytest.raises(ValueError, match=r"dones has shape \(3, 5\)"):
        rl.gae(rewards, values, dones.T, next_value, next_done)
    with pytest.raises(ValueError, match="lam must be in"):
        rl.gae(rewards, values, dones, next_value, next_done, 0.99, 1.5)
    with pytest.raises(ValueError, match="gamma must be in"):
        rl.discounted_returns(rewards, dones, -0.1)



@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, float("nan")])
def test_done_flags_other_than_0_and_1_are_an_error(bad):
    """A flag of 2 would weight the next step by 1 - 2 = -1 without a word; it is an error, naming the flag."""
    rewards, values, dones, next_value, next_done = rollout(0, 5, 3)
    wrong = dones.clone()
    wrong[2, 1] = bad
    for fn in (rl.gae, rl.gae_loop):
        with pytest.raises(ValueError, match=r"dones must hold only 0 and 1.*index \(2, 1\)"):
            fn(rewards, values, wrong, next_value, next_done)
        with pytest.raises(ValueError, match="next_done must hold only 0 and 1"):
            fn(rewards, values, dones, next_value, torch.tensor([0.0, bad, 1.0]))
    with pytest.raises(ValueError, match="dones must hold only 0 and 1"):
        rl.discounted_returns(rewards, wrong, 0.9)
    with pytest.raises(ValueError, match="next_done must hold only 0 and 1"):
        rl.discounted_returns(rewards, dones, 0.9, next_value, torch.full((3,), bad))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        rl.masked_gae(rewards.T, values.T, torch.full((3, 5), bad))
    # bool flags and integer 0/1 flags stay accepted
    torch.testing.assert_close(rl.gae(rewards, values, dones.bool(), next_value, next_done.long()),
                               rl.gae(rewards, values, dones, next_value, next_done))

def test_masked_gae_matches_gae_per_row_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    B, T = 4, 9
    lengths = [9, 5, 1, 3]
    rewards, values = torch.randn(B, T, generator=g, dtype=DOUBLE), torch.randn(B, T, generator=g, dtype=DOUBLE)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # right padding
    noisy_r, noisy_v = rewards.clone(), values.clone()
    noisy_r[~mask], noisy_v[~mask] = float("nan"), 1e6  # garbage in the padding must not matter
    adv, ret = rl.masked_gae(noisy_r, noisy_v, mask.int(), gamma=1.0, lam=0.95)
    assert torch.isfinite(adv).all() and (adv[~mask] == 0).all() and (ret[~mask] == 0).all()
    for b, L in enumerate(lengths):
        a_ref, r_ref = rl.gae(rewards[b, :L, None], values[b, :L, None], torch.zeros(L, 1), 0.0, 1.0, 1.0, 0.95)
        torch.testing.assert_close(adv[b, :L], a_ref[:, 0])
        torch.testing.assert_close(ret[b, :L], r_ref[:, 0])


# ----------------------------------------------------------------------------- clipped surrogate


def surrogate(ratios, advantages, clip=0.2):
    old = torch.full((len(ratios),), -1.3, dtype=DOUBLE)
    new = (old + torch.log(torch.tensor(ratios, dtype=DOUBLE))).requires_grad_()
    loss, info = rl.clipped_surrogate_loss(new, old, torch.tensor(advantages, dtype=DOUBLE), clip)
    return new, loss, info


@pytest.mark.parametrize("ratio, adv, loss, clipped", [
    (1.5, +1.0, -1.2, True),    # objective min(1.5, 1.2) = 1.2: clipped, no incentive to go further
    (0.5, -1.0, +0.8, True),    # min(-0.5, -0.8) = -0.8: clipped
    (0.5, +1.0, -0.5, False),   # min(0.5, 0.8) = 0.5: the pessimistic unclipped term, gradient flows
    (1.5, -1.0, +1.5, False),   # min(-1.5, -1.2) = -1.5: unclipped
    (1.1, +2.0, -2.2, False),   # inside [0.8, 1.2]: plain ratio * A
])
def test_clipped_surrogate_worked_values_and_gradients(ratio, adv, loss, clipped):
    new, pg_loss, info = surrogate([ratio], [adv])
    assert pg_loss.item() == pytest.approx(loss, abs=1e-12)
    (grad,) = torch.autograd.grad(pg_loss, new)
    if clipped:
        assert grad.item() == 0.0
    else:  # d(-A * exp(logratio)) / d new_logprob = -A * ratio
        assert grad.item() == pytest.approx(-adv * ratio)
    assert info["clipfrac"].item() == (1.0 if abs(ratio - 1) > 0.2 else 0.0)
    assert not any(v.requires_grad for v in info.values())


def test_clipped_surrogate_batch_mean_and_diagnostics():
    new, pg_loss, info = surrogate([1.5, 0.5, 0.5, 1.5], [1.0, -1.0, 1.0, -1.0])
    assert pg_loss.item() == pytest.approx((-1.2 + 0.8 - 0.5 + 1.5) / 4)
    assert info["clipfrac"].item() == 1.0 and info["ratio_mean"].item() == pytest.approx(1.0)
    (grad,) = torch.autograd.grad(pg_loss, new)
    assert grad[:2].abs().max() == 0 and (grad[2:] != 0).all()


def test_approx_kl_zero_for_equal_policies_and_close_to_true_kl():
    logp = torch.randn(64)
    _, info = rl.clipped_surrogate_loss(logp, logp.clone(), torch.randn(64), 0.2)
    assert abs(info["approx_kl"].item()) < 1e-7 and info["clipfrac"].item() == 0.0
    # With actions sampled from the old policy, approx_kl estimates KL(old || new) without bias (k3).
    g = torch.Generator().manual_seed(0)
    old, new = Categorical(logits=torch.tensor([0.0, 0.5, -0.5, 1.0])), Categorical(logits=torch.tensor([0.2, 0.3, -0.1, 0.8]))
    a = torch.multinomial(old.probs, 200_000, replacement=True, generator=g)
    _, info = rl.clipped_surrogate_loss(new.log_prob(a), old.log_prob(a), torch.zeros(a.shape), 0.2)
    true_kl = torch.distributions.kl_divergence(old, new).item()
    assert info["approx_kl"].item() == pytest.approx(true_kl, rel=0.05)


def test_losses_refuse_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"new_values \(8, 1\).*squeeze"):
        rl.value_loss(torch.zeros(8, 1), torch.zeros(8), torch.zeros(8))
    with pytest.raises(ValueError, match="shapes must match"):
        rl.clipped_surrogate_loss(torch.zeros(8), torch.zeros(8, 1), torch.zeros(8), 0.2)



@pytest.mark.parametrize("clip", [1.0, 1.5, 0.0, -0.2])
def test_clip_coef_outside_0_1_is_an_error(clip):
    """clip_coef >= 1 makes the lower end 1 - clip_coef <= 0: a falling probability would never be clipped."""
    with pytest.raises(ValueError, match=r"clip_coef must be in \(0, 1\)"):
        rl.clipped_surrogate_loss(torch.zeros(4), torch.zeros(4), torch.ones(4), clip)


def _with_nan(n: int = 6, at: int = 2) -> torch.Tensor:
    x = torch.randn(n)
    x[at] = float("nan")
    return x


@pytest.mark.parametrize("bad", ["new_logprobs", "old_logprobs", "advantages"])
def test_nan_in_the_clipped_surrogate_names_the_argument(bad):
    """Without the check a NaN gives a NaN loss and a clip fraction of 0.0 (NaN > eps is False): no warning."""
    args = {"new_logprobs": torch.randn(6), "old_logprobs": torch.randn(6), "advantages": torch.randn(6)}
    args[bad] = _with_nan()
    with pytest.raises(ValueError, match=rf"{bad} holds 1 non-finite value.*index \(2,\)"):
        rl.clipped_surrogate_loss(**args, clip_coef=0.2)
    args[bad][2] = float("inf")
    with pytest.raises(ValueError, match=bad):
        rl.clipped_surrogate_loss(**args, clip_coef=0.2)


def test_nan_in_the_other_losses_names_the_argument():
    x = torch.randn(6)
    with pytest.raises(ValueError, match="returns holds 1 non-finite"):
        rl.value_loss(x, x, _with_nan())
    with pytest.raises(ValueError, match="new_values holds 1 non-finite"):
        rl.value_loss(_with_nan(), x, x, clip_coef=0.2)
    with pytest.raises(ValueError, match="entropy holds 1 non-finite"):
        rl.entropy_bonus(_with_nan())
    with pytest.raises(ValueError, match="ref_logprobs holds 1 non-finite"):
        rl.kl_penalty(x, _with_nan())
    with pytest.raises(ValueError, match="advantages holds 1 non-finite"):
        rl.reinforce_loss(x, _with_nan())


def test_masked_positions_may_hold_nan_in_every_loss():
    """As masked_mean documents: padding may hold anything, so a NaN there is no error and changes nothing."""
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    clean = [torch.randn(2, 3) for _ in range(3)]
    padded = [torch.where(mask.bool(), t, float("nan")) for t in clean]
    for fn in (lambda a, b, c, m: rl.clipped_surrogate_loss(a, b, c, 0.2, mask=m)[0],
               lambda a, b, c, m: rl.value_loss(a, b, c, 0.2, mask=m)[0],
               lambda a, b, c, m: rl.entropy_bonus(a, mask=m),
               lambda a, b, c, m: rl.reinforce_loss(a, b, mask=m),
               lambda a, b, c, m: rl.kl_penalty(a, b, "k3", mask=m).sum()):
        torch.testing.assert_close(fn(*padded, mask), fn(*clean, mask))
    with pytest.raises(ValueError, match=r"entropy holds 1 non-finite value.*index \(1, 0\)"):
        rl.entropy_bonus(torch.where(torch.tensor([[True] * 3, [False] + [True] * 2]), clean[0], float("nan")),
                         mask=mask)

# ----------------------------------------------------------------------------- value loss, entropy, EV, KL


def test_value_loss_plain_and_clipped():
    new = torch.tensor([1.0, 0.0, 3.0], requires_grad=True)
    old, ret = torch.tensor([0.0, 0.0, 2.9]), torch.tensor([2.0, 1.0, 3.0])
    v_loss, info = rl.value_loss(new, old, ret)
    assert v_loss.item() == pytest.approx(0.5 * (1 + 1 + 0) / 3) and info["vf_clipfrac"].item() == 0.0
    # clip 0.5: first entry V_clipped = 0.5 -> (0.5-2)^2 = 2.25 > 1; second 0 -> 1; third 3.0 within 0.1 -> 0
    v_loss, info = rl.value_loss(new, old, ret, clip_coef=0.5)
    assert v_loss.item() == pytest.approx(0.5 * (2.25 + 1 + 0) / 3)
    assert info["vf_clipfrac"].item() == pytest.approx(1 / 3)
    (grad,) = torch.autograd.grad(v_loss, new)
    assert grad[0].item() == 0.0  # the clipped branch won: no gradient


def test_entropy_explained_variance_and_kl_penalty():
    assert rl.entropy_bonus(torch.tensor([1.0, 3.0])).item() == 2.0
    y = torch.randn(100)
    assert rl.explained_variance(y, y) == pytest.approx(1.0)
    assert rl.explained_variance(torch.full_like(y, y.mean().item()), y) == pytest.approx(0.0, abs=1e-6)
    assert rl.explained_variance(-y, y) < 0
    assert math.isnan(rl.explained_variance(y, torch.ones(100)))
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -1.0, -0.5])
    torch.testing.assert_close(rl.kl_penalty(logp, ref, "k1"), torch.tensor([0.5, -1.0, 0.0]))
    torch.testing.assert_close(rl.kl_penalty(logp, ref, "k2"), torch.tensor([0.125, 0.5, 0.0]))
    k3 = rl.kl_penalty(logp, ref, "k3")
    torch.testing.assert_close(k3, torch.tensor([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0]))
    assert (k3 >= 0).all()
    with pytest.raises(ValueError, match="kind must be"):
        rl.kl_penalty(logp, ref, "k4")


def test_reinforce_loss_gradient():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    adv = torch.tensor([3.0, -1.0])
    (grad,) = torch.autograd.grad(rl.reinforce_loss(logp, adv), logp)
    torch.testing.assert_close(grad, -adv / 2)


# ----------------------------------------------------------------------------- masked statistics


def test_masked_whiten_ignores_padding():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, generator=g, dtype=DOUBLE) * 4 + 2
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = rl.masked_whiten(x, mask)
    garbage = x.clone()
    garbage[mask == 0] = float("nan")
    torch.testing.assert_close(rl.masked_whiten(garbage, mask), out)
    real = out[mask.bool()]
    assert real.mean().abs() < 1e-12 and real.var().item() == pytest.approx(1.0, rel=1e-6)
    assert (out[mask == 0] == 0).all()
    kept = rl.masked_whiten(x, mask, shift_mean=False)
    assert kept[mask.bool()].mean().item() == pytest.approx(x[mask.bool()].mean().item())
    assert rl.masked_mean(garbage, mask).item() == pytest.approx(x[mask.bool()].mean().item())
    torch.testing.assert_close(rl.masked_mean(x, mask, dim=1)[1], x[1, :2].mean())


def test_normalize_advantages_is_cleanrl_formula():
    adv = torch.randn(32)
    torch.testing.assert_close(rl.normalize_advantages(adv), (adv - adv.mean()) / (adv.std() + 1e-8))
    with pytest.raises(ValueError, match="fewer than 2"):
        rl.normalize_advantages(torch.ones(1))


def test_masked_stats_errors():
    with pytest.raises(ValueError, match="selects no elements"):
        rl.masked_mean(torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="selects no elements in some slice"):
        rl.masked_mean(torch.ones(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]), dim=1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        rl.masked_mean(torch.ones(3), torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match=r"mask has shape \(2,\)"):
        rl.masked_whiten(torch.ones(3), torch.ones(2))


# ----------------------------------------------------------------------------- buffer


def filled_buffer(T=5, N=3, obs_shape=(4,), seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = rl.RolloutBuffer(T, N, obs_shape)
    for _ in range(T):
        buf.add(torch.randn(N, *obs_shape, generator=g), torch.randint(0, 2, (N,), generator=g),
                torch.randn(N, generator=g), torch.randn(N, generator=g),
                torch.rand(N, generator=g) < 0.3, torch.randn(N, 1, generator=g))  # (N, 1) value head is fine
    return buf


def test_buffer_fill_compute_flatten_minibatches():
    buf = filled_buffer()
    assert buf.full and buf.obs.shape == (5, 3, 4) and buf.actions.dtype == torch.long
    nv, nd = torch.randn(3), torch.tensor([0.0, 1.0, 0.0])
    adv, ret = buf.compute_returns_and_advantages(nv, nd, gamma=0.9, lam=0.8)
    a_ref, r_ref = rl.gae_loop(buf.rewards, buf.values, buf.dones, nv, nd, 0.9, 0.8)
    torch.testing.assert_close(adv, a_ref)
    torch.testing.assert_close(ret, r_ref)
    b = buf.flatten()
    assert b["obs"].shape == (15, 4) and b["advantages"].shape == (15,)
    torch.testing.assert_close(b["obs"][4], buf.obs[1, 1])  # flat index = t * N + n
    batches = list(buf.minibatches(n_minibatches=3, generator=torch.Generator().manual_seed(1)))
    assert [len(mb) for mb in batches] == [5, 5, 5]
    assert sorted(torch.cat(batches).tolist()) == list(range(15))
    again = list(buf.minibatches(minibatch_size=5, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    with pytest.raises(ValueError, match="does not divide"):
        next(buf.minibatches(n_minibatches=4))
    buf.reset()
    assert buf.step == 0 and not buf.full


def test_buffer_errors_name_the_problem():
    buf = filled_buffer()
    with pytest.raises(RuntimeError, match="buffer is full"):
        buf.add(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    buf = rl.RolloutBuffer(4, 3, (4,))
    with pytest.raises(RuntimeError, match="holds 0 of 4 steps"):
        buf.compute_returns_and_advantages(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"obs has shape \(3, 5\), expected \(3, 4\)"):
        buf.add(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"rewards has shape \(2,\), expected \(3,\)"):
        buf.add(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(3))
    buf.add(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"non-finite rewards at step 1, env\(s\) \[2\]"):
        buf.add(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), torch.tensor([0.0, 1.0, float("nan")]),
                torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="uint8"):
        rl.RolloutBuffer(2, 1, (4, 84, 84), obs_dtype=torch.uint8).add(
            torch.rand(1, 4, 84, 84), torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1))


# ----------------------------------------------------------------------------- policies


def test_categorical_policy_shapes_and_logprobs():
    torch.manual_seed(0)
    pol = rl.CategoricalPolicy(obs_shape=(4,), n_actions=3)
    obs = torch.randn(7, 4)
    action, logprob, entropy, value = pol.get_action_and_value(obs)
    assert action.shape == logprob.shape == entropy.shape == value.shape == (7,) and action.dtype == torch.long
    dist = Categorical(logits=pol.actor(obs))
    torch.testing.assert_close(logprob, dist.log_prob(action))
    torch.testing.assert_close(entropy, dist.entropy())
    torch.testing.assert_close(value, pol.get_value(obs))
    # re-scoring the same actions (stored as floats, as CleanRL does) gives the same log-probs
    _, logprob2, _, _ = pol.get_action_and_value(obs, action.float())
    torch.testing.assert_close(logprob2, logprob)
    # orthogonal init: near-uniform first policy, rows of the head orthogonal with norm 0.01
    head = pol.actor[-1].weight
    torch.testing.assert_close(head @ head.T, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
    assert (entropy - math.log(3)).abs().max() < 1e-3
    with pytest.raises(ValueError, match=r"expects observations of shape \(batch, 4\), got \(7, 5\)"):
        pol.get_value(torch.randn(7, 5))
    with pytest.raises(ValueError, match=r"action has shape \(6,\), expected \(7,\)"):
        pol.get_action_and_value(obs, torch.zeros(6))


def test_gaussian_policy_shapes_and_logprobs():
    torch.manual_seed(0)
    pol = rl.GaussianPolicy(obs_shape=5, act_dim=2)
    obs = torch.randn(6, 5)
    action, logprob, entropy, value = pol.get_action_and_value(obs)
    assert action.shape == (6, 2) and logprob.shape == entropy.shape == value.shape == (6,)
    dist = Normal(pol.actor_mean(obs), pol.actor_logstd.exp().expand(6, 2))
    torch.testing.assert_close(logprob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    _, logprob2, _, _ = pol.get_action_and_value(obs, action)
    torch.testing.assert_close(logprob2, logprob)
    with pytest.raises(ValueError, match=r"action has shape \(6,\), expected \(6, 2\)"):
        pol.get_action_and_value(obs, torch.zeros(6))


def test_conv_policy_uint8_frames():
    torch.manual_seed(0)
    pol = rl.ConvPolicy(n_actions=6)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    action, logprob, entropy, value = pol.get_action_and_value(frames)
    assert action.shape == logprob.shape == value.shape == (2,)
    assert pol.network[1].in_features == 64 * 7 * 7
    torch.testing.assert_close(pol.get_value(frames), pol.get_value(frames.float()))  # both scaled by 1/255
    dist = Categorical(logits=pol.actor(pol.network(frames.float() / 255.0)))
    torch.testing.assert_close(logprob, dist.log_prob(action))
    with pytest.raises(ValueError, match="channels last"):
        pol.get_value(frames.permute(0, 2, 3, 1))


def test_two_armed_bandit_learns_the_better_arm():
    """Smoke test: PPO's pieces (policy, GAE, clipped loss, value loss) solve a 2-armed bandit."""
    torch.manual_seed(0)
    pol = rl.CategoricalPolicy(obs_shape=(1,), n_actions=2, hidden=16)
    opt = torch.optim.Adam(pol.parameters(), lr=3e-3)
    N, obs = 32, torch.ones(32, 1)
    arm_means = torch.tensor([0.2, 0.8])

    def prob_best() -> float:
        with torch.no_grad():
            return Categorical(logits=pol.actor(obs[:1])).probs[0, 1].item()

    assert 0.45 < prob_best() < 0.55
    for update in range(300):
        with torch.no_grad():  # one step per env; every pull is a whole episode (next_done = 1)
            action, logprob, _, value = pol.get_action_and_value(obs)
        rewards = torch.bernoulli(arm_means[action])
        adv, ret = rl.gae(rewards[None], value[None], torch.zeros(1, N), 0.0, 1.0, 0.99, 0.95)
        adv, ret = adv[0], ret[0]
        for _ in range(2):
            _, newlogprob, entropy, newvalue = pol.get_action_and_value(obs, action)
            pg_loss, info = rl.clipped_surrogate_loss(newlogprob, logprob, rl.normalize_advantages(adv), 0.2)
            v_loss, _ = rl.value_loss(newvalue, value, ret)
            loss = pg_loss + 0.5 * v_loss - 0.01 * rl.entropy_bonus(entropy)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if prob_best() > 0.95:
            break
    assert prob_best() > 0.9, f"after {update + 1} updates P(better arm) = {prob_best():.3f}"


# ----------------------------------------------------------------------------- exercises


def test_exercises_pass_with_reference():
    check("ch09.reward_to_go", lambda r, d, g: rl.discounted_returns(r, d, g), quiet=True)
    check("ch10.gae", rl.gae_loop, quiet=True)
    check("ch10.clipped_surrogate", lambda *a: rl.clipped_surrogate_loss(*a)[0], quiet=True)


def rtg_ignoring_dones(rewards, dones, gamma):
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def rtg_wrong_done_index(rewards, dones, gamma):  # uses dones[t] instead of dones[t + 1]
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * (1 - dones[t]) * running
        out[t] = running
    return out


def gae_without_lambda(rewards, values, dones, next_value, next_done, gamma, lam):
    return rl.gae(rewards, values, dones, next_value, next_done, gamma, 1.0)


def gae_returns_forgot_values(rewards, values, dones, next_value, next_done, gamma, lam):
    adv, _ = rl.gae(rewards, values, dones, next_value, next_done, gamma, lam)
    return adv, adv


def surrogate_unclipped(new, old, adv, clip):
    return -(torch.exp(new - old) * adv).mean()


def surrogate_max_instead_of_min(new, old, adv, clip):
    ratio = torch.exp(new - old)
    return -torch.max(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def surrogate_detached(new, old, adv, clip):
    return rl.clipped_surrogate_loss(new.detach(), old, adv, clip)[0]


@pytest.mark.parametrize("exercise, wrong", [
    ("ch09.reward_to_go", rtg_ignoring_dones),
    ("ch09.reward_to_go", rtg_wrong_done_index),
    ("ch10.gae", gae_without_lambda),
    ("ch10.gae", gae_returns_forgot_values),
    ("ch10.gae", lambda *args: rl.gae(*args[:3], 0.0, args[4], *args[5:])),  # no bootstrap
    ("ch10.clipped_surrogate", surrogate_unclipped),
    ("ch10.clipped_surrogate", surrogate_max_instead_of_min),
    ("ch10.clipped_surrogate", surrogate_detached),
])
def test_exercises_fail_with_wrong_functions(exercise, wrong):
    with pytest.raises(ExerciseFailed):
        check(exercise, wrong, quiet=True)


def test_exercise_message_names_the_case():
    with pytest.raises(ExerciseFailed, match="gradient"):
        check("ch10.clipped_surrogate", surrogate_detached, quiet=True)


# ----------------------------------------------------------------------------- no environments


def test_rl_core_imports_no_environment_or_widgets():
    """The PPO losses, GAE, buffer and policies stay free of gymnasium: Part III runs them on a language model.

    The environment-side modules (envs, reinforce, pong, ppo, wrappers) may import gymnasium; ``import lmlib.rl``
    must not load it (checked below through __init__.py, which imports only the core)."""
    forbidden = {"gymnasium", "gym", "ipywidgets", "matplotlib", "IPython", "ale_py", "mujoco"}
    core = ("__init__.py", "buffer.py", "gae.py", "losses.py", "policies.py")
    for path in (Path(rl.__file__).parent / name for name in core):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, lmlib.rl; print(sorted(m for m in ('gymnasium', 'ale_py', "
                          "'mujoco', 'ipywidgets') if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
