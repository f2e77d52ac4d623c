"""lmlib.rl.envs: the probe environments give their known answers; vector envs and evaluation."""
import gymnasium as gym
import numpy as np
import pytest

from lmlib.rl import envs as E


def run_episode(env, actions):
    obs, _ = env.reset(seed=0)
    trace = [obs.copy()]
    rewards = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        rewards.append(r)
        trace.append(obs.copy())
        if term or trunc:
            return trace, rewards, True
    return trace, rewards, False


def test_every_probe_passes_gymnasiums_env_checker():
    from gymnasium.utils.env_checker import check_env
    for cls in E.PROBES.values():
        check_env(cls(), skip_render_check=True)


def test_probe1_constant_reward():
    trace, rewards, ended = run_episode(gym.make("lmlib/Probe1-v0"), [0])
    assert ended and rewards == [1.0] and trace[0].tolist() == [0.0]


def test_probe2_reward_equals_observation_and_both_signs_occur():
    env = gym.make("lmlib/Probe2-v0")
    seen = set()
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        _, r, term, _, _ = env.step(0)
        assert term and r == float(obs[0])
        seen.add(float(obs[0]))
    assert seen == {-1.0, 1.0}


def test_probe3_two_steps_reward_at_the_end():
    trace, rewards, ended = run_episode(gym.make("lmlib/Probe3-v0"), [0, 0, 0])
    assert ended and rewards == [0.0, 1.0]
    assert [o.tolist() for o in trace[:2]] == [[0.0], [1.0]]


def test_probe4_reward_depends_on_the_action():
    env = gym.make("lmlib/Probe4-v0")
    assert env.action_space.n == 2
    assert run_episode(env, [1])[1] == [1.0]
    assert run_episode(env, [0])[1] == [-1.0]


def test_probe5_reward_needs_action_and_observation():
    env = gym.make("lmlib/Probe5-v0")
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        right = int(obs[0] > 0)
        assert env.step(right)[1] == 1.0
        env.reset(seed=seed)
        assert env.step(1 - right)[1] == -1.0


def test_invalid_action_is_a_clear_error():
    env = E.ActionDependentRewardEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="2 action"):
        env.step(5)


def test_make_vec_env_autoresets_in_the_same_step_and_records_episodes():
    envs = E.make_vec_env("lmlib/Probe3-v0", 3, seed=1)
    assert envs.num_envs == 3 and envs.first_obs.shape == (3, 1)
    envs.step(np.zeros(3, dtype=np.int64))
    obs, r, term, trunc, info = envs.step(np.zeros(3, dtype=np.int64))
    assert term.all() and r.tolist() == [1.0, 1.0, 1.0]
    assert obs[:, 0].tolist() == [0.0, 0.0, 0.0]  # already the first observation of the next episode
    ep = info["final_info"]["episode"]
    assert ep["r"].tolist() == [1.0, 1.0, 1.0] and ep["l"].tolist() == [2, 2, 2]
    envs.close()


def test_make_vec_env_unknown_id_and_bad_n():
    with pytest.raises(ValueError, match="unknown environment id"):
        E.make_vec_env("NoSuchEnv-v9", 2, 0)
    with pytest.raises(ValueError, match="at least one"):
        E.make_vec_env("CartPole-v1", 0, 0)


def test_evaluate_random_agent_is_reproducible_and_plausible_on_cartpole():
    a = E.evaluate(None, "CartPole-v1", 20, seed=3)
    b = E.evaluate(None, "CartPole-v1", 20, seed=3)
    assert a.shape == (20,) and np.array_equal(a, b)
    assert 10 < a.mean() < 40  # a random CartPole agent balances for about 22 steps
    assert (a >= 8).all()


def test_evaluate_with_the_optimal_policy_on_probes():
    assert E.evaluate(lambda o: int(o[0] > 0), "lmlib/Probe5-v0", 10, seed=0).tolist() == [1.0] * 10
    assert E.evaluate(lambda o: 0, "lmlib/Probe4-v0", 5, seed=0).tolist() == [-1.0] * 5
    with pytest.raises(ValueError, match="episodes"):
        E.evaluate(None, "lmlib/Probe1-v0", 0, seed=0)


def test_evaluate_takes_an_env_function_and_cuts_episodes_at_max_steps():
    """The one episode loop of the book (lmlib.rl.ppo.evaluate plays PPO agents with it)."""
    closed = []

    def make():
        env = gym.make("CartPole-v1")
        env.close = lambda: closed.append(True)
        return env

    by_id = E.evaluate(lambda o: int(o[2] > 0), "CartPole-v1", 3, seed=5)
    assert np.array_equal(E.evaluate(lambda o: int(o[2] > 0), make, 3, seed=5), by_id) and closed == [True]
    assert E.evaluate(lambda o: int(o[2] > 0), "CartPole-v1", 3, seed=5, max_steps=7).tolist() == [7.0] * 3
    assert E.evaluate(lambda o: 0, "CartPole-v1", 2, seed=0, max_episode_steps=5).tolist() == [5.0] * 2
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        E.evaluate(None, "CartPole-v1", 1, seed=0, max_steps=0)
    with pytest.raises(ValueError, match="need an environment id"):
        E.evaluate(None, make, 1, seed=0, max_episode_steps=5)
    with pytest.raises(TypeError, match="gymnasium id or a function"):
        E.evaluate(None, 3, 1, seed=0)
