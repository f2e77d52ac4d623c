"""Deep reinforcement learning from human preferences (Christiano et al., 2017): PPO on a learned reward.

The loop of the paper, on top of :func:`lmlib.rl.ppo.ppo` and :mod:`lmlib.preferences`::

    PPO collects experience, rewarded by the ensemble's prediction r̂(o, a)   (RewardModelWrapper)
    every step is also cut into clips of `segment_length` steps             (SegmentRecorder)
    after each PPO iteration, if the label schedule says labels are due:
        sample candidate pairs of recent clips, keep those the ensemble disagrees on most,
        ask the rater, add the answers to the dataset, refit the ensemble (bootstrap resamples)

The agent never sees the environment's reward; it is kept in ``info`` (and in each clip's
``rewards``) only to draw the true learning curve and to let a :class:`~lmlib.preferences.SyntheticRater`
answer. Any callable ``rater(pair) -> "left" | "right" | "equal" | "cant_tell"`` works, so the
same loop runs with a scripted rater, a hand-written backflip reward, or labels the reader gave.

Atari (the paper's second set of experiments): the reward model stays a small MLP, so each frame
stack is first turned into a short vector by a *featurizer*, :func:`atari_features` (the last
frame, average-pooled to 21x21); discrete actions are one-hot. The paper's Atari predictor was a
convolutional network on the stacked frames; ours sees one down-sampled frame per step.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from . import (MLPRewardModel, PreferenceDataset, PreferencePair, RewardEnsemble, Segment,
                           collate_segments, label_schedule, sample_pairs, select_queries, train_reward_model)
from ..rl.ppo import PPOConfig, act, fast_mujoco_rendering, is_atari, make_env, obs_for_policy, ppo

Featurizer = Callable[[Any], np.ndarray]

__all__ = ["PreferenceRLConfig", "SegmentRecorder", "collect_clips", "EnsembleReward", "reward_agreement",
           "ppo_from_preferences", "atari_features",
           "clip_frames", "add_frames", "backflip_reward", "count_backflips"]


@dataclass
class PreferenceRLConfig:
    """Settings of :func:`ppo_from_preferences` (PPO's own settings stay in :class:`~lmlib.rl.ppo.PPOConfig`).

    ``total_labels`` answers are requested over the run on the schedule of
    :func:`~lmlib.preferences.label_schedule` (a fraction ``initial_fraction`` as soon as
    there are clips, then at a rate falling like ``1 / (tau + t)`` with ``tau = tau_fraction *
    total_timesteps``). For each label, ``candidates_per_query`` random pairs of the
    ``pool_size`` most recent clips are scored and the most disputed is asked
    (``query_method="disagreement"``), or one is drawn at random (``"random"``, the
    paper's baseline). After each batch of answers the ensemble of ``ensemble_size`` MLPs
    (``hidden`` units) trains ``reward_epochs`` more epochs on all answers so far.
    ``labelling_fraction`` < 1 asks every label within that first fraction of the run and then
    freezes the reward model (the reward-hacking experiment: nobody checks the late behaviour).
    ``reward_floor`` shifts the learned reward after every refit so that its smallest value on
    the labelled clips is 0. Comparisons cannot fix the reward's zero; in a task that ends the
    episode at a fall, a reward that is never negative makes staying alive never worse than
    falling (a *survival bias*, as in adversarial imitation, Kostrikov et al. 2019).
    ``label_every`` > 1 asks (and refits) only every that many PPO iterations, the labels due
    in between asked together (and at the last iteration whatever is still due): refitting an
    ensemble on Atari features costs seconds, too much to do after each of 400 iterations.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    total_labels: int = 700
    segment_length: int = 50
    ensemble_size: int = 3
    hidden: int = 64
    initial_fraction: float = 0.25
    tau_fraction: float = 0.1
    candidates_per_query: int = 10
    query_method: str = "disagreement"
    reward_epochs: int = 5
    reward_lr: float = 1e-3
    reward_batch_size: int = 32
    epsilon: float = 0.1
    pool_size: int = 2000
    labelling_fraction: float = 1.0
    label_every: int = 1
    reward_floor: bool = False
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.total_labels < 2:
            raise ValueError(f"total_labels must be >= 2 (a reward model needs two answers), got {self.total_labels}")
        if not 0.0 < self.labelling_fraction <= 1.0:
            raise ValueError(f"labelling_fraction must be in (0, 1], got {self.labelling_fraction}")
        if self.segment_length < 2:
            raise ValueError(f"segment_length must be >= 2, got {self.segment_length}")
        if self.query_method not in ("disagreement", "random"):
            raise ValueError(f"query_method must be 'disagreement' or 'random', got {self.query_method!r}")
        if self.candidates_per_query < 1 or self.ensemble_size < 1 or self.pool_size < 2:
            raise ValueError("candidates_per_query and ensemble_size must be >= 1 and pool_size >= 2")
        if self.label_every < 1:
            raise ValueError(f"label_every must be >= 1 (PPO iterations between labelling rounds), "
                             f"got {self.label_every}")


def atari_features(obs: Any, pool: int = 4) -> np.ndarray:
    """Per-step features of an Atari observation for an MLP reward model: the last frame, average-pooled.

    ``obs``: the ``(4, 84, 84)`` uint8 frame stack of :func:`~lmlib.rl.ppo.make_env` (or one
    ``(84, 84)`` frame). The last frame is averaged over ``pool x pool`` blocks and scaled to
    ``[0, 1]``: ``(84/pool * 84/pool,)`` float32, ``(441,)`` for ``pool=4``. Christiano et al.
    fed the whole stack to a convolutional network; one coarse frame keeps the reward model an
    MLP of Chapter 11 (the bricks, the paddle and the ball stay visible, the ball as a faint dot).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    x = np.asarray(obs)
    if x.dtype != np.uint8:
        raise ValueError(f"atari_features needs uint8 frames (0-255) as make_env returns them, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[-1]
    if x.ndim != 2:
        raise ValueError(f"atari_features needs a frame stack (C, H, W) or one frame (H, W), got shape {x.shape}")
    H, W = x.shape
    if pool < 1 or H % pool or W % pool:
        raise ValueError(f"pool={pool} must be >= 1 and divide the frame size {H}x{W}")
    rows = x.reshape(H // pool, pool, W).sum(1, dtype=np.float32)  # sum each block's rows, then its columns:
    blocks = rows.reshape(H // pool, W // pool, pool).sum(2)         # 2x faster than one sum over axes (1, 3)
    return (blocks * np.float32(1.0 / (255 * pool * pool))).reshape(-1)


def _featurize_checked(featurize: Featurizer, obs: Any) -> np.ndarray:
    """``featurize(obs)`` as float32 ``(D,)``, with an error that says what came back otherwise."""
    f = np.asarray(featurize(obs), np.float32)
    if f.ndim != 1:
        raise ValueError(f"featurize(obs) must return a 1-D feature vector (D,), got shape {f.shape}")
    return f


class SegmentRecorder(gym.Wrapper):
    """Cut the experience of one environment into clips of ``length`` steps and append them to ``sink``.

    Each :class:`~lmlib.preferences.Segment` holds the observations the actions were taken
    from ``(L, obs_dim)``, the actions ``(L, act_dim)`` and the environment's rewards ``(L,)``;
    its ``meta`` holds the environment id, the episode's start seed (if any), the step within
    the episode, and for MuJoCo the simulator states ``qpos``/``qvel`` of every step, so a clip
    can be re-rendered later for a human rater. The last, shorter piece of an episode becomes a
    clip too if it has at least ``length // 2`` steps (a fall is worth showing).

    For environments with a notion of health (Hopper, Walker2d, Ant: ``env.unwrapped.is_healthy``),
    ``info["standard_episode_return"]`` at the end of each episode is the return up to the first
    unhealthy step: what the standard environment, which ends the episode at the first fall, pays
    for the same steps. It makes agents trained with ``terminate_when_unhealthy=False`` comparable
    with agents trained on the standard task.

    Image observations (Atari) need ``featurize``: each step then stores ``featurize(obs)`` ``(D,)``
    (e.g. :func:`atari_features`) instead of the observation, and discrete actions are stored
    one-hot ``(L, n_actions)``; the true rewards are whatever the environment pays (the game score
    for :func:`~lmlib.rl.ppo.make_env` with ``train=False``). Without ``featurize`` observations are
    stored as they are, and must be vectors.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, env: gym.Env, sink: list, length: int = 50, featurize: Featurizer | None = None) -> None:
        super().__init__(env)
        if featurize is None:
            if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
                raise ValueError(f"SegmentRecorder needs vector observations, got {env.observation_space}; for "
                                 f"images (Atari) pass featurize=, e.g. lmlib.preferences.agent.atari_features")
        elif not callable(featurize):
            raise TypeError(f"featurize must be callable as featurize(obs) -> (D,) features, "
                            f"got {type(featurize).__name__}")
        if int(length) < 1:
            raise ValueError(f"length must be >= 1 step, got {length}")
        self.sink, self.length, self.featurize = sink, int(length), featurize
        discrete = featurize is not None and isinstance(env.action_space, gym.spaces.Discrete)
        self._one_hot = np.eye(int(env.action_space.n), dtype=np.float32) if discrete else None
        self._mujoco = hasattr(env.unwrapped, "data") and hasattr(env.unwrapped.data, "qpos")
        self._health = hasattr(env.unwrapped, "is_healthy")
        self._clear()
        self._obs = None

    def _clear(self) -> None:
        self._steps: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "qpos": [], "qvel": []}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._clear()
        self._obs, self._t = obs, 0
        self._standard_return, self._fallen = 0.0, False
        return obs, info

    def step(self, action):
        if self._mujoco:
            self._steps["qpos"].append(self.env.unwrapped.data.qpos.copy())
            self._steps["qvel"].append(self.env.unwrapped.data.qvel.copy())
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.featurize is None:
            self._steps["obs"].append(np.asarray(self._obs, np.float32))
        else:
            self._steps["obs"].append(_featurize_checked(self.featurize, self._obs))
        if self._one_hot is None:
            self._steps["actions"].append(np.asarray(action, np.float32).reshape(-1))
        else:
            self._steps["actions"].append(self._one_hot[int(action)])
        self._steps["rewards"].append(float(reward))
        self._obs, self._t = obs, self._t + 1
        if self._health:
            if not self._fallen:  # the standard task pays the step of the fall, then ends the episode
                self._standard_return += float(reward)
                self._fallen = not self.env.unwrapped.is_healthy
            if terminated or truncated:
                info = {**info, "standard_episode_return": self._standard_return}
        n = len(self._steps["obs"])
        if n == self.length or ((terminated or truncated) and n >= max(2, self.length // 2)):
            self._emit()
        elif terminated or truncated:
            self._clear()
        return obs, reward, terminated, truncated, info

    def _emit(self) -> None:
        s = self._steps
        meta: dict[str, Any] = {"env_id": self.env.spec.id if self.env.spec else None,
                                "end_step_in_episode": self._t}
        if self._mujoco:
            meta["qpos"], meta["qvel"] = np.stack(s["qpos"]), np.stack(s["qvel"])
        self.sink.append(Segment(np.stack(s["obs"]), np.stack(s["actions"]), np.asarray(s["rewards"]), meta))
        self._clear()


def collect_clips(
    policy: torch.nn.Module | None,
    env_id: str = "Hopper-v5",
    episodes: int = 1,
    segment_length: int = 50,
    action_noise: float = 0.0,
    deterministic: bool = True,
    seed: int = 0,
    env_kwargs: dict | None = None,
    source: str = "",
) -> list[Segment]:
    """Run ``policy`` (a PPO policy of Chapter 10; ``None`` acts uniformly at random) for ``episodes`` episodes
    and return their clips, cut by :class:`SegmentRecorder`.

    ``action_noise`` adds Gaussian noise of that std to each action before clipping, a cheap way to
    get behaviour of every quality from one good agent. Each clip's ``meta["source"]`` is ``source``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if episodes < 1 or action_noise < 0:
        raise ValueError(f"need episodes >= 1 and action_noise >= 0, got {episodes}, {action_noise}")
    clips: list[Segment] = []
    env = SegmentRecorder(gym.make(env_id, **dict(env_kwargs or {})), clips, segment_length)
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ValueError(f"collect_clips needs continuous actions, got {env.action_space}")
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    try:
        for k in range(episodes):
            o, _ = env.reset(seed=seed + k)
            done = False
            while not done:
                if policy is None:
                    a = rng.uniform(low, high)
                else:
                    with torch.inference_mode():
                        a = act(policy, obs_for_policy(policy, np.asarray(o)[None]), deterministic)[0].numpy()
                a = np.clip(a + action_noise * rng.standard_normal(a.shape), low, high)
                o, _, terminated, truncated, _ = env.step(a)
                done = terminated or truncated
    finally:
        env.close()
    for c in clips:
        c.meta["source"] = source
    return clips


class EnsembleReward:
    """``reward_fn(obs, action, next_obs)`` for :func:`~lmlib.rl.ppo.ppo`: the ensemble's normalised reward
    of one step, r̂(o, a) (the mean over members of each member's normalised output).

    PPO asks for one step at a time, where PyTorch's per-call overhead would dominate (about
    2 ms for three small MLPs), so for ensembles of :class:`~lmlib.preferences.MLPRewardModel`
    the weights are copied into stacked numpy arrays and the members run together (tens of
    microseconds). The copy is refreshed automatically whenever a weight or a normalisation
    statistic changes (PyTorch counts in-place updates), so refitting the ensemble changes
    the reward at once. Other member types go through the ensemble itself.

    The step's input is ``[featurize(obs), action]`` (``featurize`` default: the observation
    itself), with the action one-hot over ``n_actions`` when that is given (discrete actions,
    Atari): the same features :class:`SegmentRecorder` stores with the same ``featurize``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, ensemble: RewardEnsemble, featurize: Featurizer | None = None,
                 n_actions: int | None = None) -> None:
        if not isinstance(ensemble, RewardEnsemble):
            raise TypeError(f"EnsembleReward needs a RewardEnsemble, got {type(ensemble).__name__}")
        if featurize is not None and not callable(featurize):
            raise TypeError(f"featurize must be callable as featurize(obs) -> (D,), got {type(featurize).__name__}")
        if n_actions is not None and int(n_actions) < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        self.ensemble, self.featurize = ensemble, featurize
        self._one_hot = None if n_actions is None else np.eye(int(n_actions))
        self._tensors = list(ensemble.parameters()) + list(ensemble.buffers())
        self._stamp: tuple | None = None
        self._layers: list | None = None
        self._fast = all(isinstance(m, MLPRewardModel) and m.embed is None for m in ensemble.members)
        self.offset = 0.0  # subtracted from every reward (ppo_from_preferences' reward_floor sets it)

    def _refresh(self) -> None:
        layers: list = []
        nets = [m.net for m in self.ensemble.members]
        for mods in zip(*nets):
            kind = type(mods[0])
            if kind is torch.nn.Linear:
                W = np.stack([m.weight.detach().numpy().T for m in mods]).astype(np.float64)  # (K, in, out)
                b = np.stack([m.bias.detach().numpy() for m in mods]).astype(np.float64)[:, None, :]
                layers.append(("linear", W, b))
            elif kind is torch.nn.LeakyReLU:
                layers.append(("leaky", mods[0].negative_slope))
            elif kind is torch.nn.Dropout:
                continue  # identity at prediction time
            else:
                raise TypeError(f"EnsembleReward's fast path does not know layer {kind.__name__}")
        e = self.ensemble
        self._mean = e.norm_mean.double().numpy()
        self._std = np.sqrt(e.norm_var.double().numpy() + 1e-8)
        self._layers = layers

    def features(self, obs: Any, action: Any) -> np.ndarray:
        """The reward model's input for one step, ``(D + A,)`` float64: features of ``obs``, then the action."""
        o = obs if self.featurize is None else _featurize_checked(self.featurize, obs)
        if self._one_hot is None:
            a = np.asarray(action, np.float64).reshape(-1)
        else:
            i = int(np.asarray(action).reshape(()))
            if not 0 <= i < len(self._one_hot):
                raise ValueError(f"action {i} is out of range for n_actions={len(self._one_hot)}")
            a = self._one_hot[i]
        return np.concatenate([np.asarray(o, np.float64).reshape(-1), a])

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> float:
        x = self.features(obs, action)
        if not self._fast:
            with torch.inference_mode():
                return float(self.ensemble(torch.from_numpy(x).float().view(1, 1, -1))) - self.offset
        stamp = tuple(t._version for t in self._tensors)
        if stamp != self._stamp:
            self._refresh()
            self._stamp = stamp
        if x.shape[0] != self._layers[0][1].shape[1]:
            raise ValueError(f"the reward model reads {self._layers[0][1].shape[1]} features per step, this step "
                             f"has {x.shape[0]} (observation features + action); check featurize and n_actions")
        h = x[None, None, :]  # (1, 1, D), broadcast over the K members
        for layer in self._layers:
            if layer[0] == "linear":
                h = h @ layer[1] + layer[2]  # (K, 1, out)
            else:
                h = np.where(h > 0, h, layer[1] * h)
        r = h[:, 0, 0]  # (K,)
        return float(np.mean((r - self._mean) / self._std)) - self.offset


def clip_frames(segment: Segment, width: int = 240, height: int = 240, every: int = 1) -> np.ndarray:
    """Re-render a MuJoCo clip from the simulator states that :class:`SegmentRecorder` kept: ``(n, H, W, 3)`` uint8,
    one frame every ``every`` steps (the rater's video). Needs ``MUJOCO_GL=egl`` (or a display) before
    ``mujoco`` is imported.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    meta = segment.meta
    if "qpos" not in meta or "qvel" not in meta or not meta.get("env_id"):
        raise ValueError("this segment has no MuJoCo states (meta['qpos'], meta['qvel'], meta['env_id']); "
                         "record it with SegmentRecorder on a MuJoCo environment")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    env = gym.make(meta["env_id"], render_mode="rgb_array", width=width, height=height)
    try:
        env.reset(seed=0)
        fast_mujoco_rendering(env)
        frames = []
        for qpos, qvel in zip(meta["qpos"][::every], meta["qvel"][::every]):
            env.unwrapped.set_state(qpos, qvel)
            frames.append(env.render())
    finally:
        env.close()
    return np.stack(frames)


def add_frames(pairs: list[PreferencePair], width: int = 240, height: int = 240, every: int = 2) -> list[PreferencePair]:
    """Render both clips of every pair (:func:`clip_frames`) into ``segment.meta["frames"]`` (with ``"fps"``),
    which is what :class:`lmlib.ui.labeling.LabelingWidget` shows; segments already rendered are skipped.
    Returns ``pairs``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    fps: dict[str, int] = {}  # render rate per environment id, read once
    for pair in pairs:
        for seg in (pair.left, pair.right):
            if "frames" not in seg.meta:
                seg.meta["frames"] = clip_frames(seg, width, height, every)
                env_id = seg.meta["env_id"]
                if env_id not in fps:
                    env = gym.make(env_id)
                    fps[env_id] = max(1, round(env.metadata.get("render_fps", 30) / every))
                    env.close()
                seg.meta["fps"] = fps[env_id]
    return pairs


def reward_agreement(ensemble: RewardEnsemble, pairs: list[PreferencePair]) -> float:
    """Fraction of ``pairs`` (with true rewards, no ties) where the ensemble's summed reward ranks the two clips
    as their true returns do: how well the learned reward agrees with the real one.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    pairs = [p for p in pairs if p.left.true_return != p.right.true_return]
    if not pairs:
        raise ValueError("reward_agreement needs pairs whose true returns differ")
    p_left = ensemble.member_probabilities(pairs, epsilon=0.0).mean(0)  # (N,)
    truth = np.array([p.left.true_return > p.right.true_return for p in pairs])
    return float(np.mean((p_left > 0.5) == truth))


def ppo_from_preferences(
    env_id: str,
    ppo_cfg: PPOConfig,
    rater: Callable[[PreferencePair], str],
    cfg: PreferenceRLConfig | None = None,
    *,
    log_every: int = 0,
    agreement_pairs: int = 200,
    env_kwargs: dict | None = None,
    featurize: Featurizer | None = None,
) -> tuple[torch.nn.Module, RewardEnsemble, dict[str, Any]]:
    """Train ``ppo_cfg``'s PPO agent on ``env_id`` from a rater's answers about pairs of its own clips.

    Returns ``(policy, ensemble, history)``. ``history`` is PPO's history (its
    ``"episode_return"``/``"true_episode_return"`` are the *true* returns, ``"model_episode_return"``
    the learned ones) plus, per labelling round, ``"label_step"`` (environment steps so
    far), ``"labels"`` (answers so far, "can't tell" included), ``"rm_accuracy"`` (the ensemble's
    agreement with the answers it trained on) and ``"agreement"`` (:func:`reward_agreement` on
    ``agreement_pairs`` fresh random pairs of recent clips, scored with their true rewards; no
    label is spent on them), plus ``"dataset"`` (the :class:`~lmlib.preferences.PreferenceDataset`)
    and ``"rlhp_config"``. ``env_kwargs`` go to ``gym.make`` (e.g. ``terminate_when_unhealthy=False``
    for a Hopper that may flip over).

    Atari ids (e.g. ``"BreakoutNoFrameskip-v4"``, with ``PPOConfig.atari()``) need ``featurize``
    (:func:`atari_features`). The environment is :func:`~lmlib.rl.ppo.make_env`'s with
    ``train=False``: frame skip, 84x84 grey, FIRE at reset, 4 stacked frames, but no life-loss
    episode ends and no reward clipping, so clips and curves count the game score. As in the
    paper, the agent gets no episode-end signal either: a game over reaches PPO as a time-limit
    cut (bootstrapped with the value of the last frame), so ending the game early cannot be a way
    out of a learned reward that is mostly negative. Other discrete-action tasks work with a
    ``featurize`` too; without one, only continuous actions are accepted.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    cfg = PreferenceRLConfig() if cfg is None else cfg
    cfg.check()
    if not callable(rater):
        raise TypeError(f"rater must be callable as rater(pair) -> choice, got {type(rater).__name__}")
    if featurize is not None and not callable(featurize):
        raise TypeError(f"featurize must be callable as featurize(obs) -> (D,) features, "
                        f"got {type(featurize).__name__}")
    make = _env_maker(env_id, dict(env_kwargs or {}), featurize)
    in_dim, n_actions = _reward_model_inputs(make, featurize, cfg.seed)
    ensemble = RewardEnsemble.of_mlps(cfg.ensemble_size, seed=cfg.seed, in_dim=in_dim, hidden=cfg.hidden)
    reward = EnsembleReward(ensemble, featurize, n_actions)
    rounds = _LabellingRounds(ensemble, reward, rater, cfg, ppo_cfg, agreement_pairs, log_every)

    policy, history = ppo(lambda: SegmentRecorder(make(), rounds.pool, cfg.segment_length, featurize), ppo_cfg,
                          reward_fn=reward, callback=rounds, log_every=log_every)
    history.update(rounds.log)
    history["dataset"] = rounds.dataset
    history["rlhp_config"] = asdict(cfg)
    return policy, ensemble, history


def _env_maker(env_id: str, env_kwargs: dict, featurize: Featurizer | None) -> Callable[[], gym.Env]:
    """A function making one environment for :func:`ppo_from_preferences`: Atari ids through ``make_env`` (no
    training wrappers, episode ends hidden from the agent), others through ``gym.make(env_id, **env_kwargs)``."""
    atari = is_atari(env_id)
    if atari and env_kwargs:
        raise ValueError(f"env_kwargs are not used for Atari ids (make_env builds {env_id}), got {env_kwargs}")
    if atari and featurize is None:
        raise ValueError(f"{env_id} has image observations: pass featurize=, "
                         f"e.g. lmlib.preferences.agent.atari_features")

    def make() -> gym.Env:
        return _NoEpisodeEnd(make_env(env_id, "atari", train=False)) if atari else gym.make(env_id, **env_kwargs)

    return make


def _reward_model_inputs(make: Callable[[], gym.Env], featurize: Featurizer | None,
                         seed: int) -> tuple[int, int | None]:
    """``(in_dim, n_actions)`` of the reward model for one environment of ``make``: observation features plus
    action dimensions, and the number of discrete actions (one-hot, with a ``featurize``) or ``None``."""
    probe = make()
    try:
        space = probe.action_space
        if isinstance(space, gym.spaces.Discrete) and featurize is not None:
            act_dim, n_actions = int(space.n), int(space.n)
        elif isinstance(space, gym.spaces.Box):
            act_dim, n_actions = int(np.prod(space.shape or (1,))), None
        else:
            raise ValueError(f"ppo_from_preferences supports continuous-action (MuJoCo-style) tasks, and discrete "
                             f"ones with a featurize (Atari), got {space}")
        if featurize is None:
            obs_dim = probe.observation_space.shape[0]
        else:
            obs_dim = _featurize_checked(featurize, probe.reset(seed=seed)[0]).shape[0]
    finally:
        probe.close()
    return obs_dim + act_dim, n_actions


class _LabellingRounds:
    """PPO's callback in :func:`ppo_from_preferences`: after each iteration, if the label schedule says labels
    are due (and it is a labelling iteration), ask the rater about the most disputed pairs of recent clips,
    refit the ensemble (which changes ``reward``, PPO's reward, at once) and score it. ``pool`` is where the
    :class:`SegmentRecorder` of every environment puts its clips."""

    def __init__(self, ensemble: RewardEnsemble, reward: EnsembleReward, rater: Callable[[PreferencePair], str],
                 cfg: PreferenceRLConfig, ppo_cfg: PPOConfig, agreement_pairs: int, log_every: int) -> None:
        self.ensemble, self.reward, self.rater = ensemble, reward, rater
        self.cfg, self.agreement_pairs, self.log_every = cfg, agreement_pairs, log_every
        self.num_iterations = ppo_cfg.num_iterations
        self.rng = np.random.default_rng(cfg.seed)
        # PPO stops at whole iterations, short of total_timesteps
        last_step = ppo_cfg.num_iterations * ppo_cfg.batch_size
        label_steps = max(1, int(cfg.labelling_fraction * last_step))
        self.schedule = label_schedule(cfg.total_labels, label_steps, cfg.initial_fraction,
                                       tau=max(1.0, cfg.tau_fraction * label_steps))
        self.pool: list[Segment] = []
        self.dataset = PreferenceDataset()
        self.log: dict[str, list] = {"label_step": [], "labels": [], "rm_accuracy": [], "agreement": [],
                                     "label_seconds": []}
        self.asked = 0

    def __call__(self, iteration: int, history: dict) -> None:
        cfg = self.cfg
        del self.pool[: max(0, len(self.pool) - cfg.pool_size)]  # keep the most recent clips
        step = history["global_step"][-1]
        due = min(self.schedule.due(step, self.asked), cfg.total_labels - self.asked)
        round_now = iteration % cfg.label_every == 0 or iteration == self.num_iterations or self.asked == 0
        if due <= 0 or len(self.pool) < 2 or not round_now:
            return None
        t0 = time.perf_counter()
        self._ask(due)
        self.log["rm_accuracy"].append(self._refit())
        self.log["agreement"].append(self._agreement())
        self.log["label_step"].append(step)
        self.log["labels"].append(self.asked)
        self.log["label_seconds"].append(time.perf_counter() - t0)
        if self.log_every and iteration % self.log_every == 0:
            print(f"  labels {self.asked}/{cfg.total_labels}, reward model accuracy {self.log['rm_accuracy'][-1]:.2f}, "
                  f"agreement with the true reward {self.log['agreement'][-1]:.2f}", flush=True)
        return None

    def _ask(self, due: int) -> None:
        """Ask the rater about ``due`` pairs, chosen among ``candidates_per_query`` random pairs each."""
        cfg = self.cfg
        candidates = sample_pairs(self.pool, due * cfg.candidates_per_query, self.rng)
        method = cfg.query_method if len(self.dataset) >= 2 else "random"  # an untrained ensemble knows nothing
        for pair in select_queries(candidates, self.ensemble, due, method, rng=self.rng, epsilon=cfg.epsilon):
            self.dataset.add(pair, self.rater(pair))
            self.asked += 1

    def _refit(self) -> float:
        """Train the ensemble more on all answers so far (and shift the reward to a floor of 0 if asked);
        return its accuracy on them (NaN before there are two answers)."""
        cfg = self.cfg
        if len(self.dataset) < 2:
            return float("nan")
        fit = train_reward_model(self.ensemble, self.dataset, epochs=cfg.reward_epochs, lr=cfg.reward_lr,
                                 batch_size=cfg.reward_batch_size, seed=int(self.rng.integers(1 << 31)),
                                 val_fraction=0.0, epsilon=cfg.epsilon)
        if cfg.reward_floor:
            with torch.no_grad():
                x, mask = collate_segments(self.dataset.segments())
                self.reward.offset = float(self.ensemble(x)[mask].min())
            self.log.setdefault("reward_offset", []).append(self.reward.offset)
        return fit["accuracy"][-1]

    def _agreement(self) -> float:
        """:func:`reward_agreement` on fresh random pairs of the pool (NaN without any, or if all tie)."""
        fresh = sample_pairs(self.pool, self.agreement_pairs, self.rng) if self.agreement_pairs else []
        try:
            return reward_agreement(self.ensemble, fresh) if fresh else float("nan")
        except ValueError:
            return float("nan")


class _NoEpisodeEnd(gym.Wrapper):
    """Report every episode end as a truncation, which PPO bootstraps (``PPOConfig.bootstrap_truncated``, on in
    every preset): the agent is not told that the game is over. The environment still resets, and the episode
    statistics recorded below this wrapper count the game as usual."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, False, bool(terminated or truncated), info


# ----------------------------------------------------------------------------- the backflip


def backflip_reward(obs: Any, actions: Any) -> np.ndarray:
    """The hand-written Hopper backflip reward quoted in Christiano et al.'s blog post, per step: ``(L,)``.

    ``backroll * (1 + .3 height + .1 vel_act + .05 backslide)`` with ``backroll = -obs[7]`` (the
    torso's angular velocity, backwards), ``height = obs[0]``, ``vel_act = a . obs[8:11]`` (joint
    speeds times torques) and ``backslide = -obs[5]`` (moving backwards). ``obs`` ``(L, 11)`` are
    Hopper-v5 observations (``(11,)`` for one step), ``actions`` ``(L, 3)``. As a rater's reward
    function: ``SyntheticRater(reward_fn=lambda seg: backflip_reward(seg.obs, seg.actions))``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    ob, a = np.atleast_2d(np.asarray(obs, np.float64)), np.atleast_2d(np.asarray(actions, np.float64))
    if ob.shape[1] != 11 or a.shape != (ob.shape[0], 3):
        raise ValueError(f"backflip_reward needs Hopper observations (L, 11) and actions (L, 3), got {ob.shape} "
                         f"and {a.shape}")
    backroll, height, backslide = -ob[:, 7], ob[:, 0], -ob[:, 5]
    vel_act = a[:, 0] * ob[:, 8] + a[:, 1] * ob[:, 9] + a[:, 2] * ob[:, 10]
    return backroll * (1.0 + 0.3 * height + 0.1 * vel_act + 0.05 * backslide)


def count_backflips(torso_angles: Any) -> int:
    """Whole backward turns of the torso over an episode: the net decrease of its (unwrapped) angle, in units
    of 2π, rounded down. ``torso_angles`` ``(T,)``: Hopper's ``obs[:, 1]`` (``qpos[2]``), which MuJoCo
    does not wrap, so integrating the angular velocity is the same as reading the angle.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    angles = np.asarray(torso_angles, np.float64).reshape(-1)
    if angles.size < 2:
        return 0
    turned_back = angles[0] - np.minimum.accumulate(angles)[-1]  # the furthest backwards it got
    return int(np.floor(turned_back / (2 * np.pi)))
