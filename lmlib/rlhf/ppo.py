"""PPO on tokens with a per-token KL penalty: the third step of InstructGPT, on the book's chat GPT.

One iteration of RLHF with PPO (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022):

1. **Rollouts**: the policy answers a batch of prompts at temperature 1 (:meth:`RLHFTrainer.rollout`, through
   :func:`lmlib.lm.decoding.generate_batch` and its KV cache);
2. **Scores**: a reward function scores each whole answer (the reward model of chapter 14, or the gold judge as
   a control); :func:`token_rewards` turns the score and the per-token KL penalty ``-beta (log pi - log pi_ref)``
   into one reward per token, the score landing on the last token;
3. **Advantages**: a value head on the policy's trunk (:class:`PolicyWithValue`) predicts the return before
   every token; :func:`lmlib.rl.gae.masked_gae` runs GAE over the tokens of each answer and
   :func:`lmlib.rl.losses.masked_whiten` whitens the advantages;
4. **Updates**: a few epochs of minibatches of chapter 10's clipped losses, as they are
   (:func:`lmlib.rl.losses.clipped_surrogate_loss`, :func:`lmlib.rl.losses.value_loss`), plus optionally the
   pretraining loss on Shakespeare (InstructGPT's "PPO-ptx") against the alignment tax;
5. **The KL coefficient**: fixed, or held near a target KL by :class:`AdaptiveKLController`.

Over-optimisation (Gao et al. 2023) is read off the same runs: the gold and proxy scores against
``d = sqrt(KL)``, with the fitted forms of :func:`overoptimisation_fit`.

Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb); built on Chapters 10, 13
and 14.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import as_mask
from ..lm.decoding import distinct_n, generate_batch
from ..lm.gpt import GPT
from ..preferences import last_token_index
from ..rl.gae import masked_gae
from ..rl.losses import clipped_surrogate_loss, explained_variance, kl_penalty, masked_mean, masked_whiten, value_loss
from ..text.tokenizer import CharTokenizer
from .chat import Example
from .judge import GoldJudge, gold_judge
from .reward import encode_answers, score_answers
from .template import END, format_prompt, require_chat_tokens

__all__ = ["PolicyWithValue", "response_outputs", "token_rewards", "FixedKLController", "AdaptiveKLController",
           "PPOConfig", "Rollout", "RLHFTrainer", "fitting_prompts", "reward_model_scorer", "gold_scorer", "loo_centre", "overoptimisation_fit",
           "overoptimisation_curve"]


# ----------------------------------------------------------------------------- the policy and its value head


class PolicyWithValue(nn.Module):
    """The policy GPT with a value head on its trunk: ``V(s_t) = w . h_t + b`` read from the hidden state that
    also predicts token t (one forward pass gives both; TRL's ``AutoModelForCausalLMWithValueHead``).

    With ``detach_value`` (the default) the head reads the hidden states through ``detach()``: the value loss
    trains the head only and never moves the policy, as with InstructGPT's separate value model, at the cost of
    one forward pass instead of two (the head is then a linear probe of the policy's features, which
    :meth:`RLHFTrainer.warmup_values` can fit in closed form before PPO starts). ``detach_value=False`` shares
    the trunk: the value loss then trains the policy's weights too.

    The head starts at zero (every value 0), so the policy starts exactly as ``gpt``. ``gpt`` is deep-copied
    unless ``copy_model=False``.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    def __init__(self, gpt: GPT, copy_model: bool = True, detach_value: bool = True) -> None:
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be an lmlib.lm.gpt.GPT, got {type(gpt).__name__}")
        self.gpt = copy.deepcopy(gpt) if copy_model else gpt
        self.value_head = nn.Linear(gpt.config.n_embd, 1)
        self.detach_value = bool(detach_value)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, tokens: Tensor, mask: Tensor, prompt_width: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(logprobs, values, entropy)`` of the response ``tokens[:, prompt_width:]``, each ``(B, N)``: see
        :func:`response_outputs`."""
        return response_outputs(self.gpt, tokens, mask, prompt_width, value_head=self.value_head,
                                detach_value=self.detach_value)


def response_outputs(gpt: GPT, tokens: Tensor, mask: Tensor, prompt_width: int,
                     value_head: nn.Module | None = None, detach_value: bool = False,
                     ) -> tuple[Tensor, Tensor | None, Tensor]:
    """Log-probabilities, values and entropies of the response tokens of a batch of prompt + response rows.

    ``tokens (B, P + N)`` holds left-padded prompts in its first ``P = prompt_width`` columns and the responses
    after them (as :func:`lmlib.lm.decoding.generate_batch` returns them); ``mask (B, P + N)`` is True at real
    tokens. One forward pass over ``tokens[:, :-1]``: the hidden state at column ``t - 1`` predicts token ``t``,
    so columns ``P - 1 ... P + N - 2`` give, for each response token, its log-probability under ``gpt``
    (temperature 1, unfiltered), the entropy of the distribution it was drawn from, and (with ``value_head``) the
    value of the state before it (read from detached hidden states with ``detach_value``). The LM head runs on
    those N columns only.

    Returns ``(logprobs (B, N), values (B, N) or None, entropy (B, N))``, all float32, with gradients if
    enabled; positions where ``mask`` is False hold finite numbers that mean nothing (mask them).

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    if not isinstance(tokens, Tensor) or tokens.ndim != 2:
        raise ValueError(f"tokens must be a (B, T) tensor, got {getattr(tokens, 'shape', type(tokens).__name__)}")
    m = as_mask(mask, tokens, "mask")
    T = tokens.shape[1]
    if not 1 <= prompt_width < T:
        raise ValueError(f"prompt_width must be in [1, T - 1] = [1, {T - 1}] (at least one prompt and one "
                         f"response column), got {prompt_width}")
    if T - 1 > gpt.config.block_size:
        raise ValueError(f"prompt + response are {T} tokens; the model reads at most block_size + 1 = "
                         f"{gpt.config.block_size + 1} (keep prompts within block_size + 1 - max_new_tokens: "
                         f"fitting_prompts)")
    h = gpt.hidden_states(tokens[:, :-1], attention_mask=m[:, :-1])[:, prompt_width - 1:]  # (B, N, C)
    logits = gpt.lm_head(h).float()  # (B, N, V)
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, tokens[:, prompt_width:, None].long())[..., 0]  # (B, N)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if value_head is not None:
        values = value_head(h.detach() if detach_value else h)[..., 0].float()
    return logprobs, values, entropy


# ----------------------------------------------------------------------------- rewards and the KL coefficient


def token_rewards(
    scores: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> tuple[Tensor, Tensor]:
    """Per-token rewards of RLHF: ``r_t = -kl_coef * kl_t``, plus the answer's score on its last real token.

    ``kl_t`` is :func:`lmlib.rl.losses.kl_penalty` of the sampled token (``"k1"``:
    ``log pi(a_t|s_t) - log pi_ref(a_t|s_t)``, as InstructGPT and TRL). Summed over an answer, the rewards are
    ``score - kl_coef * KL``, the objective ``E[r(x, y)] - beta KL(pi || pi_ref)``; spread over the tokens, every
    token pays for its own drift from the reference model, which GAE then credits to the tokens before it.

    Worked example: scores ``[1.0]``, logprobs ``[[-1, -2, -3]]``, ref ``[[-1.5, -2, -2]]``, mask all True,
    ``kl_coef=0.1``: kl ``[[0.5, 0, -1]]``, rewards ``[[-0.05, 0, 0.1 + 1.0]]``.

    Args:
        scores: ``(B,)`` the reward function's score of each answer.
        logprobs, ref_logprobs: ``(B, N)`` the sampled tokens' log-probabilities under the policy and the
            reference model.
        mask: ``(B, N)`` True at real response tokens, right-padded (every row has at least one).
        kl_coef: beta >= 0. kind: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``(rewards, kl)``, both ``(B, N)``, zero at padding.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
    if not isinstance(scores, Tensor) or scores.ndim != 1 or scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores must be a (B,) tensor with B = {logprobs.shape[0]} (one score per answer), got "
                         f"{getattr(scores, 'shape', type(scores).__name__)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores holds NaN or infinite values: check the reward function")
    if logprobs.shape != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the shape of logprobs {tuple(logprobs.shape)}")
    last = last_token_index(mask)  # (B,); checks that every row is right-padded and has a real token
    kl = kl_penalty(logprobs, ref_logprobs, kind, mask)  # (B, N), 0 at padding; checks shapes and finiteness
    rewards = -kl_coef * kl
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards = rewards.index_put((rows, last), scores.to(rewards.dtype), accumulate=True)
    return rewards, kl


class FixedKLController:
    """A constant KL coefficient (``value``); :meth:`update` does nothing. Same interface as
    :class:`AdaptiveKLController`.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    def __init__(self, kl_coef: float) -> None:
        if not (math.isfinite(kl_coef) and kl_coef >= 0):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. (2019, sec. 2.2): hold the KL per answer near ``target``.

    After each batch of ``n_steps`` answers with mean KL ``current_kl``::

        error = clip(current_kl / target - 1, -0.2, 0.2)
        value = value * (1 + error * n_steps / horizon)

    A KL above target raises beta (the penalty pulls the policy back), one below lowers it; the clip keeps one
    noisy batch from moving beta by more than ``0.2 * n_steps / horizon``. Worked example: ``value=0.1``,
    ``target=6``, ``horizon=10000``, a batch of 256 answers at KL 9: error 0.2 (0.5, clipped), value
    ``0.1 * (1 + 0.2 * 0.0256) = 0.1005120``.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float = 10_000) -> None:
        for name, v in (("init_kl_coef", init_kl_coef), ("target", target), ("horizon", horizon)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl!r}")
        if not (isinstance(n_steps, int) and n_steps >= 1):
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# ----------------------------------------------------------------------------- the trainer


@dataclass(frozen=True)
class PPOConfig:
    """The settings of :class:`RLHFTrainer` (defaults: the book's chapter-15 recipe on a 2-core CPU).

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    batch_size: int = 64
    """Answers per iteration (prompts drawn without replacement, one answer each)."""
    minibatch_size: int = 16
    """Answers per gradient step."""
    ppo_epochs: int = 4
    """Passes over each batch."""
    lr: float = 5e-5
    """Adam's learning rate of the policy (its GPT)."""
    value_lr: float = 1e-3
    """Adam's learning rate of the value head: it starts at zero and must catch up with the returns quickly, a
    single linear layer on features the trunk already has."""
    max_new_tokens: int = 64
    """Longest answer; prompts must fit in ``block_size + 1 - max_new_tokens`` tokens."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts. Anything but 1 samples from another distribution than the policy
    whose log-probabilities PPO and the KL use: the KL estimate is then biased and can go negative."""
    clip_coef: float = 0.2
    vf_coef: float = 0.1
    vf_clip: float | None = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    """beta, the initial KL coefficient."""
    target_kl: float | None = None
    """With a number: :class:`AdaptiveKLController` holds the KL per answer near it; None: beta stays fixed."""
    kl_horizon: float = 10_000
    kl_estimator: str = "k1"
    ptx_coef: float = 0.0
    """Weight of the pretraining loss mixed into every gradient step (0: plain PPO)."""
    max_grad_norm: float = 1.0
    whiten_advantages: bool = True
    loo_baseline: bool = False
    """Subtract from each answer's score the mean score of the *other* answers to the same prompt in the batch
    (the leave-one-out baseline of RLOO, Ahmadian et al. 2024), before the KL penalty; needs every prompt to
    appear at least twice in a batch (pass each example k times). The value head then learns what is left."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "minibatch_size", "ppo_epochs", "max_new_tokens"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of minibatch_size {self.minibatch_size}")
        for name in ("lr", "value_lr", "temperature", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("kl_coef", "ptx_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


RewardFn = Callable[[Sequence[Example], Sequence[str], Sequence[bool]], Any]
"""``reward_fn(examples, answers, ended) -> (B,)`` scores: one per answer (``ended``: it said ``<|end|>``)."""


@dataclass
class Rollout:
    """One batch of answers with everything PPO needs (tensors ``(B, N)`` unless said otherwise).

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    examples: list
    answers: list[str]
    ended: list[bool]
    tokens: Tensor  # (B, P + N): left-padded prompts, then the responses
    mask: Tensor  # (B, P + N): True at real tokens
    prompt_width: int  # P
    response_mask: Tensor
    logprobs: Tensor  # under the policy that sampled
    ref_logprobs: Tensor  # under the reference (tuned) model
    values: Tensor
    scores: Tensor  # (B,) the reward function's
    kl: Tensor  # per-token KL estimates (0 at padding)
    rewards: Tensor
    advantages: Tensor
    returns: Tensor
    gold: Tensor | None = None  # (B,) the gold judge's, if the trainer has a gold_fn (never used for training)
    kl_coef: float = 0.0


def fitting_prompts(examples: Sequence[Example], tokenizer: CharTokenizer, block_size: int,
                    max_new_tokens: int) -> list[Example]:
    """The examples whose chat prompt fits in ``block_size + 1 - max_new_tokens`` tokens, so that prompt and a
    full-length answer fit in one forward pass of the policy (the book GPT has learned positions: it cannot
    slide past ``block_size``). The rest are left out of PPO.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    room = block_size + 1 - max_new_tokens
    if room < 2:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in block_size={block_size}")
    return [e for e in examples if len(tokenizer.encode(format_prompt(e))) <= room]


def reward_model_scorer(model: nn.Module, tokenizer: CharTokenizer, batch_size: int = 64) -> RewardFn:
    """A :data:`RewardFn` from a chapter-14 reward model: each (prompt, answer) encoded as the reward model was
    trained (:func:`lmlib.rlhf.reward.encode_answers`, ``<|end|>`` only if the answer ended) and scored at its
    last token (:func:`lmlib.rlhf.reward.score_answers`).

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    block_size = model.trunk.gpt.config.block_size
    pad_id = tokenizer.stoi[END]

    def reward_fn(examples, answers, ended):
        rows = encode_answers(tokenizer, examples, answers, block_size, ended)
        return score_answers(model, rows, pad_id, batch_size).numpy()

    return reward_fn


def gold_scorer(judge: GoldJudge | None = None, facet: str = "overall") -> RewardFn:
    """A :data:`RewardFn` from the gold judge: its ``facet`` score (default ``overall``) of each answer; an
    answer cut at the length limit is judged as it stands.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    judge = judge if judge is not None else gold_judge()

    def gold_fn(examples, answers, ended):
        return np.array([getattr(s, facet) for s in judge.judge_batch(examples, answers)], dtype=np.float64)

    return gold_fn


def loo_centre(scores: Tensor, groups: Sequence[Any]) -> Tensor:
    """Each score minus the mean of the other scores of its group (the leave-one-out baseline of RLOO).

    Worked example: scores ``[1, 2, 3, 5, 7]`` in groups ``[a, a, a, b, b]`` give
    ``[1 - 2.5, 2 - 2, 3 - 1.5, 5 - 7, 7 - 5] = [-1.5, 0, 1.5, -2, 2]``. A group of one answer has no baseline:
    that is an error.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    if len(groups) != scores.shape[0]:
        raise ValueError(f"got {len(groups)} groups for {scores.shape[0]} scores")
    index: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    alone = [g for g, idx in index.items() if len(idx) < 2]
    if alone:
        raise ValueError(f"the leave-one-out baseline needs at least 2 answers per prompt; {len(alone)} prompt(s) "
                         f"have one (e.g. {alone[0]!r}): pass each example k >= 2 times")
    out = scores.clone()
    for idx in index.values():
        s = scores[idx]
        out[idx] = s - (s.sum() - s) / (len(idx) - 1)
    return out


def _distinct(words: list[list[str]], n: int) -> float:
    """Distinct-n over the words of a batch of answers; nan when no answer has n words."""
    try:
        return distinct_n(words, n)
    except ValueError:
        return float("nan")


class RLHFTrainer:
    """PPO with a per-token KL penalty against a frozen reference model, on a chat GPT.

    Args:
        policy: a :class:`PolicyWithValue` (its GPT is the tuned model to start with; it is trained in place).
        ref: the reference model (the tuned GPT, frozen: never trained, eval mode).
        tokenizer: the chat tokenizer of both.
        reward_fn: ``reward_fn(examples, answers, ended) -> (B,)`` the scores PPO maximises (a reward model, or
            the gold judge as a control).
        config: a :class:`PPOConfig`.
        gold_fn: optional ``gold_fn(examples, answers, ended) -> (B,)``, recorded beside every batch to watch the
            truth during training; it never enters the updates.
        ptx_batch_fn: ``ptx_batch_fn(generator) -> (x, y)`` pretraining windows for PPO-ptx (needed when
            ``config.ptx_coef > 0``).
        seed: seeds sampling and the minibatch order.

    :meth:`step` does one iteration on a list of examples and returns its statistics; :attr:`history` keeps them.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """

    def __init__(self, policy: PolicyWithValue, ref: GPT, tokenizer: CharTokenizer, reward_fn: RewardFn,
                 config: PPOConfig = PPOConfig(), *, gold_fn: RewardFn | None = None,
                 ptx_batch_fn: Callable[[torch.Generator], tuple[Tensor, Tensor]] | None = None, seed: int = 0):
        if not isinstance(policy, PolicyWithValue):
            raise TypeError(f"policy must be a PolicyWithValue, got {type(policy).__name__}")
        if policy.gpt is ref:
            raise ValueError("ref must be a separate, frozen copy of the tuned model, not the policy's own GPT")
        require_chat_tokens(tokenizer)
        if config.ptx_coef > 0 and ptx_batch_fn is None:
            raise ValueError("config.ptx_coef > 0 needs a ptx_batch_fn giving pretraining (x, y) windows")
        # the reference model is only ever run under no_grad (it is never trained, and its requires_grad flags are
        # left alone: it is usually the reader's tuned model, which other code may still fine-tune)
        self.policy, self.ref, self.tokenizer, self.config = policy, ref.eval(), tokenizer, config
        self.reward_fn, self.gold_fn, self.ptx_batch_fn = reward_fn, gold_fn, ptx_batch_fn
        self.end_id = tokenizer.stoi[END]
        self.kl_ctl = (AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
                       if config.target_kl is not None else FixedKLController(config.kl_coef))
        self.optimizer = torch.optim.Adam([{"params": policy.gpt.parameters(), "lr": config.lr},
                                           {"params": policy.value_head.parameters(), "lr": config.value_lr}],
                                          eps=1e-5)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, Any]] = []
        self.policy.eval()  # dropout off throughout, so that the ratio compares the same function (TRL does too)

    def _scores(self, fn: RewardFn, examples, answers, ended) -> Tensor:
        s = torch.as_tensor(np.asarray(fn(examples, answers, ended), dtype=np.float32))
        if s.shape != (len(answers),):
            raise ValueError(f"the reward function returned shape {tuple(s.shape)}, expected ({len(answers)},)")
        if not bool(torch.isfinite(s).all()):
            raise ValueError("the reward function returned NaN or infinite scores")
        return s

    @torch.no_grad()
    def rollout_answers(self, examples: Sequence[Example]) -> tuple[Tensor, Tensor, int, Tensor, list[str], list[bool]]:
        """The current policy's answers to ``examples`` at the configured temperature, unscored:
        ``(tokens (B, P + N), mask (B, P + N), P, response_mask (B, N), answers, ended)``."""
        cfg, tok = self.config, self.tokenizer
        prompts = [tok.encode(format_prompt(e)) for e in examples]
        room = self.policy.gpt.config.block_size + 1 - cfg.max_new_tokens
        if max(map(len, prompts)) > room:
            raise ValueError(f"a prompt has {max(map(len, prompts))} tokens; with max_new_tokens="
                             f"{cfg.max_new_tokens} at most {room} fit: filter them with fitting_prompts")
        gen = generate_batch(self.policy.gpt, prompts, cfg.max_new_tokens, eos_id=self.end_id, pad_id=self.end_id,
                             temperature=cfg.temperature, generator=self.generator)
        P = gen.prompt_mask.shape[1]
        mask = torch.cat([gen.prompt_mask, gen.response_mask], dim=1)
        answers, ended = [], []
        for row, m in zip(gen.response.tolist(), gen.response_mask.tolist()):
            ids = [t for t, k in zip(row, m) if k]
            ended.append(bool(ids) and ids[-1] == self.end_id)
            answers.append(tok.decode(ids[:-1] if ended[-1] else ids))
        return gen.tokens, mask, P, gen.response_mask, answers, ended

    @torch.no_grad()
    def rollout(self, examples: Sequence[Example]) -> Rollout:
        """Answers to ``examples`` from the current policy, scored, with rewards, advantages and returns."""
        cfg = self.config
        tokens, mask, P, rmask, answers, ended = self.rollout_answers(examples)
        logprobs, values, _ = self.policy(tokens, mask, P)
        ref_logprobs, _, _ = response_outputs(self.ref, tokens, mask, P)
        scores = self._scores(self.reward_fn, examples, answers, ended)
        gold = self._scores(self.gold_fn, examples, answers, ended) if self.gold_fn is not None else None
        beta = self.kl_ctl.value
        shaped = loo_centre(scores, [e.id for e in examples]) if cfg.loo_baseline else scores
        rewards, kl = token_rewards(shaped, logprobs, ref_logprobs, rmask, beta, cfg.kl_estimator)
        advantages, returns = masked_gae(rewards, values, rmask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = torch.where(rmask, masked_whiten(advantages, rmask), 0.0)
        return Rollout(list(examples), answers, ended, tokens, mask, P, rmask, logprobs, ref_logprobs, values,
                       scores, kl, rewards, advantages, returns, gold, beta)

    @torch.no_grad()
    def warmup_values(self, batches: Sequence[Sequence[Example]], ridge: float = 10.0) -> dict[str, float]:
        """Fit the value head in closed form before PPO starts, so that the first advantages already have a
        baseline that knows the prompt (an easy prompt's answers are not "good" just for being easy).

        Rolls out each batch with the current policy (nothing is trained), takes the Monte-Carlo returns of
        every real response token (GAE with lambda = 1: score minus the KL still to come), and solves the ridge
        regression ``min ||H w + b - R||^2 + ridge ||w||^2`` over the hidden states H those values are read from.
        Needs ``detach_value`` (the head must be a probe of features that the value loss cannot change).

        Returns ``{"positions", "explained_variance_fit"}`` (on the fitted data).
        """
        if not self.policy.detach_value:
            raise ValueError("warmup_values fits a probe of the policy's features: use PolicyWithValue(detach_value=True)")
        feats, targets = [], []
        for examples in batches:
            ro = self.rollout(examples)
            _, mc_returns = masked_gae(ro.rewards, ro.values, ro.response_mask, self.config.gamma, 1.0)
            h = self.policy.gpt.hidden_states(ro.tokens[:, :-1], attention_mask=ro.mask[:, :-1])[:, ro.prompt_width - 1:]
            feats.append(h[ro.response_mask].double())
            targets.append(mc_returns[ro.response_mask].double())
        H, R = torch.cat(feats), torch.cat(targets)
        X = torch.cat([H, torch.ones(len(H), 1, dtype=H.dtype)], 1)  # (M, C + 1)
        reg = ridge * torch.eye(X.shape[1], dtype=X.dtype)
        reg[-1, -1] = 0.0  # the bias is not shrunk
        w = torch.linalg.solve(X.T @ X + reg, X.T @ R)
        self.policy.value_head.weight.copy_(w[:-1].to(self.policy.value_head.weight.dtype)[None])
        self.policy.value_head.bias.copy_(w[-1:].to(self.policy.value_head.bias.dtype))
        pred = X @ w
        return {"positions": int(len(R)), "explained_variance_fit": float(1 - (R - pred).var() / R.var())}

    def update(self, ro: Rollout) -> dict[str, float]:
        """``ppo_epochs`` passes of minibatch updates on one rollout; the mean losses and diagnostics."""
        cfg = self.config
        B = ro.tokens.shape[0]
        mb = min(cfg.minibatch_size, B)
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "ptx_loss", "entropy", "approx_kl",
                                                         "clipfrac", "vf_clipfrac", "grad_norm")}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.generator)
            for i in range(0, B, mb):
                idx = order[i:i + mb]
                m = ro.response_mask[idx]
                # columns past the longest answer of this minibatch are padding: cut them (less work)
                n = int(m.sum(1).max())
                tokens, mask = ro.tokens[idx, :ro.prompt_width + n], ro.mask[idx, :ro.prompt_width + n]
                m = m[:, :n]
                new_lp, new_v, ent = self.policy(tokens, mask, ro.prompt_width)
                pg_loss, info = clipped_surrogate_loss(new_lp, ro.logprobs[idx, :n], ro.advantages[idx, :n],
                                                       cfg.clip_coef, mask=m)
                vf_loss, vinfo = value_loss(new_v, ro.values[idx, :n], ro.returns[idx, :n], cfg.vf_clip, mask=m)
                loss = pg_loss + cfg.vf_coef * vf_loss
                if cfg.ptx_coef > 0:
                    x, y = self.ptx_batch_fn(self.generator)
                    ptx = self.policy.gpt(x, y)[1]
                    loss = loss + cfg.ptx_coef * ptx
                    stats["ptx_loss"].append(ptx.item())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gn = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                stats["pg_loss"].append(pg_loss.item())
                stats["vf_loss"].append(vf_loss.item())
                stats["entropy"].append(float(masked_mean(ent.detach(), m)))
                stats["approx_kl"].append(float(info["approx_kl"]))
                stats["clipfrac"].append(float(info["clipfrac"]))
                stats["vf_clipfrac"].append(float(vinfo["vf_clipfrac"]))
                stats["grad_norm"].append(float(gn))
        return {k: float(np.mean(v)) for k, v in stats.items() if v}

    def step(self, examples: Sequence[Example]) -> dict[str, Any]:
        """One PPO iteration on ``examples`` (one answer each): rollout, update, KL coefficient; its statistics.

        Recorded: ``score`` (mean proxy score), ``gold`` (if a gold_fn), ``kl`` (mean KL per answer, nats, k1
        summed over its tokens), ``kl_coef``, ``reward`` (score - beta KL), ``length`` (characters), ``ended``,
        ``distinct_1``/``distinct_2`` (over the batch's answers, pooled), the update's losses and diagnostics,
        ``explained_variance`` of the values, and timings.
        """
        t0 = time.perf_counter()
        ro = self.rollout(examples)
        t1 = time.perf_counter()
        upd = self.update(ro)
        t2 = time.perf_counter()
        seq_kl = ro.kl.sum(1)  # (B,) KL per answer: padding is 0
        self.kl_ctl.update(float(seq_kl.mean()), len(examples))
        words = [a.split() for a in ro.answers]
        rec = {
            "iteration": len(self.history) + 1,
            "score": float(ro.scores.mean()),
            "gold": float(ro.gold.mean()) if ro.gold is not None else None,
            "kl": float(seq_kl.mean()),
            "kl_coef": ro.kl_coef,
            "reward": float((ro.scores - ro.kl_coef * seq_kl).mean()),
            "length": float(np.mean([len(a) for a in ro.answers])),
            "ended": float(np.mean(ro.ended)),
            "distinct_1": _distinct(words, 1),
            "distinct_2": _distinct(words, 2),
            "explained_variance": explained_variance(ro.values, ro.returns, ro.response_mask),
            **upd,
            "seconds_rollout": round(t1 - t0, 3),
            "seconds_update": round(t2 - t1, 3),
        }
        self.history.append(rec)
        self.last_rollout = ro
        return rec


# ----------------------------------------------------------------------------- over-optimisation


def _design(d: np.ndarray, form: str) -> np.ndarray:
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    if form == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):
            dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
        return np.stack([d, -dlogd], axis=1)
    raise ValueError(f"form must be 'bon' (best-of-n: d (alpha - beta d)) or 'rl' (d (alpha - beta log d)), "
                     f"got {form!r}")


def overoptimisation_fit(d: Any, gain: Any, form: str) -> dict[str, float]:
    """Least-squares fit of Gao et al. (2023)'s functional forms to gold-score gains against ``d = sqrt(KL)``.

    * ``form="bon"`` (best-of-n): ``gain(d) = d (alpha - beta d)``, peak at ``d* = alpha / (2 beta)``;
    * ``form="rl"`` (RL): ``gain(d) = d (alpha - beta log d)``, peak at ``d* = exp(alpha / beta - 1)``.

    Both pass through 0 at ``d = 0`` (the starting policy) and are linear in (alpha, beta), so ordinary least
    squares finds them exactly. ``gain`` is the gold score minus the starting policy's.

    Returns ``{"form", "alpha", "beta", "r2", "d_peak", "gain_peak", "n"}``; ``r2 = 1 - SS_res / SS_tot`` about
    the mean of ``gain``; ``d_peak`` is None when beta <= 0 (no peak: the gain never turns down).

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    y = np.asarray(gain, dtype=np.float64).ravel()
    if d.shape != y.shape or d.size < 3:
        raise ValueError(f"d and gain must be 1-D of the same length >= 3, got {d.shape} and {y.shape}")
    if not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError("d and gain must be finite")
    if (d < 0).any():
        raise ValueError("d = sqrt(KL) must be >= 0 (a negative KL estimate has no square root: see chapter 15)")
    X = _design(d, form)
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ np.array([alpha, beta])
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    d_peak = None
    if beta > 0:
        d_peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    out = {"form": form, "alpha": float(alpha), "beta": float(beta), "r2": r2, "n": int(d.size),
           "d_peak": None if d_peak is None else float(d_peak)}
    out["gain_peak"] = None if d_peak is None else float(overoptimisation_curve(d_peak, alpha, beta, form))
    return out


def overoptimisation_curve(d: Any, alpha: float, beta: float, form: str) -> np.ndarray:
    """The fitted gain ``d (alpha - beta d)`` (``"bon"``) or ``d (alpha - beta log d)`` (``"rl"``) at ``d``.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    d = np.asarray(d, dtype=np.float64)
    flat = d.reshape(-1)
    if (flat < 0).any():
        raise ValueError("d must be >= 0")
    return (_design(flat, form) @ np.array([alpha, beta])).reshape(d.shape)
