"""lmlib.rl.pong: Karpathy's Pong from pixels: preprocessing, rally labels, the update's sign, resume."""
import numpy as np
import pytest
import torch

from lmlib.checkpoint import load_checkpoint
from lmlib.rl import pong as P


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def synthetic_frame(background=144):
    f = np.zeros((210, 160, 3), dtype=np.uint8)
    f[..., 0] = background
    f[:35] = 200  # the score: cropped away
    f[100:104, 140:142] = (92, 186, 92)  # the agent's paddle (green)
    f[120, 80] = 236  # the ball
    return f


def test_prepro_synthetic_frame():
    x = P.prepro(synthetic_frame())
    assert x.shape == (6400,) and x.dtype == np.float32 and set(np.unique(x)) == {0.0, 1.0}
    img = x.reshape(80, 80)
    # kept rows are 35, 37, ...: paddle rows 101 and 103 -> rows 33, 34; cols 140, 141 -> col 70
    assert img[33:35, 70].tolist() == [1.0, 1.0] and img[:, 70].sum() == 2
    assert x.sum() == 2  # the ball sits on row 120, which the downsampling drops
    assert P.prepro(synthetic_frame(109)).sum() == 2  # the other background colour is erased too


def test_prepro_real_frame():
    env = P.make_pong_env()
    frame, _ = env.reset(seed=0)
    for _ in range(30):
        frame, *_ = env.step(P.UP)
    x = P.prepro(frame)
    env.close()
    assert x.shape == (6400,) and 20 < x.sum() < 200  # two paddles (and maybe a ball), background erased


def test_prepro_errors():
    with pytest.raises(ValueError, match=r"\(210, 160, 3\)"):
        P.prepro(np.zeros((84, 84), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        P.prepro(np.zeros((210, 160, 3), np.float32))


def test_difference_frame():
    a, b = np.zeros(6400, np.float32), np.zeros(6400, np.float32)
    a[10], b[11] = 1, 1
    d = P.difference_frame(b, a)
    assert d[10] == -1 and d[11] == 1 and np.abs(d).sum() == 2
    assert not P.difference_frame(a, None).any()
    with pytest.raises(ValueError, match="6400"):
        P.difference_frame(np.zeros(100), None)


def test_rally_returns_by_hand():
    r = P.rally_returns(torch.tensor([0.0, 0.0, 1.0, 0.0, -1.0, 0.0]), gamma=0.5)
    assert r.tolist() == [0.25, 0.5, 1.0, -0.5, -1.0, 0.0]
    with pytest.raises(ValueError, match="non-finite"):
        P.rally_returns(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match=r"\(T,\)"):
        P.rally_returns(torch.zeros(2, 2))


def test_policy_shapes_and_errors():
    pol = P.PongPolicy(hidden=200)
    assert sum(p.numel() for p in pol.parameters()) == 6400 * 200 + 200
    p = pol(torch.zeros(3, 6400))
    assert p.shape == (3,) and torch.allclose(p, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="6400"):
        pol(torch.zeros(3, 80, 80))


@pytest.mark.parametrize("outcome", [1.0, -1.0])
def test_update_sign_won_rally_makes_its_actions_more_likely(outcome):
    torch.manual_seed(0)
    pol = P.PongPolicy(hidden=16)
    g = torch.Generator().manual_seed(1)
    xs = torch.randint(-1, 2, (12, 6400), generator=g).float()
    ups = torch.randint(0, 2, (12,), generator=g)
    # two rallies: the first always lost, the second ends with `outcome`
    rewards = torch.tensor([0, 0, 0, -1.0, 0, 0, 0, 0, 0, 0, 0, outcome])

    def logp():
        with torch.no_grad():
            p = pol(xs)
            return torch.where(ups == 1, p, 1 - p).log()

    before = logp()
    opt = torch.optim.SGD(pol.parameters(), lr=1e-3)
    P.episode_loss(pol, xs, ups, rewards, gamma=0.99).backward()
    opt.step()
    change = logp() - before
    # the first rally was lost: its actions become less likely either way
    assert change[:4].mean() < 0
    # the second rally: more likely if it was won, less likely if it was lost
    assert (change[4:].mean() > 0) == (outcome > 0)


def test_episode_loss_shape_error():
    with pytest.raises(ValueError, match="same T steps"):
        P.episode_loss(P.PongPolicy(8), torch.zeros(5, 6400), torch.zeros(4), torch.zeros(5))


def test_train_pong_resume_equals_uninterrupted(tmp_path):
    cfg = P.PongConfig(hidden=16, batch_size=1, max_episode_steps=60)
    straight, h = P.train_pong(episodes=3, seed=0, cfg=cfg)
    assert h["env_steps"] == [60, 120, 180] and len(h["episode_return"]) == 3 and h["steps_per_second"] > 0
    ck = tmp_path / "pong.safetensors"
    P.train_pong(episodes=2, seed=0, cfg=cfg, ckpt_path=ck)
    assert load_checkpoint(ck).meta["history"]["episode"] == [0, 1]
    resumed, h2 = P.train_pong(episodes=3, seed=0, cfg=cfg, ckpt_path=ck)
    assert h2["episode_return"] == h["episode_return"]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        P.train_pong(episodes=4, seed=1, cfg=cfg, ckpt_path=ck)


def test_train_pong_needs_a_budget():
    with pytest.raises(ValueError, match="episodes"):
        P.train_pong()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=50)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, -1.0]), min_size=1, max_size=40),
       st.floats(0.0, 1.0))
def test_rally_returns_matches_karpathys_loop(rewards, gamma):
    # pg-pong.py's discount_rewards, verbatim in spirit
    expected, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        if rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        expected[t] = running
    got = P.rally_returns(torch.tensor(rewards), gamma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1))
def test_prepro_is_binary_and_ignores_the_score(seed):
    rng = np.random.default_rng(seed)
    f = rng.choice(np.array([144, 109, 92, 236, 213], np.uint8), size=(210, 160, 3))
    x = P.prepro(f)
    assert x.shape == (6400,) and set(np.unique(x)) <= {0.0, 1.0}
    g = f.copy()
    g[:35] = rng.integers(0, 256, size=(35, 160, 3), dtype=np.uint8)  # a different score
    g[:, 1::2] = 0  # odd columns are dropped
    assert np.array_equal(P.prepro(g), x)
