"""Learning a reward function from human preferences (Christiano et al., 2017).

A rater watches two short clips (*segments*) and says which one is better. A
reward model r̂ predicts a reward for every step of a clip; the clip it
prefers is the one with the larger **sum** of predicted rewards, through the
Bradley-Terry model

    P[left ≻ right] = (1 - ε) · σ(R̂_left - R̂_right) + ε / 2,    R̂ = Σ_t r̂(s_t),

where ε = 0.1 says the rater answers at random one time in ten. Training
minimises the cross-entropy between this probability and the rater's label
μ ∈ {1 (left better), 0 (right better), 0.5 (equally good)}.

Nothing here knows about environments: a :class:`Segment` holds per-step
features ``(L, D)`` (a MuJoCo or Atari clip) or token ids ``(L,)`` (a
language-model completion), so the same code trains the reward models of the
RLHF chapters. Names follow TRL where they overlap (chosen/rejected, logits,
``beta``-free ``epsilon``).

The pieces, in the order the paper uses them:

* :class:`Segment`, :class:`PreferencePair`, :class:`PreferenceDataset` - clips, pairs and labels;
* :func:`preference_probability`, :func:`preference_loss` - the Bradley-Terry model and its loss;
* :class:`MLPRewardModel`, :class:`RewardEnsemble`, :func:`train_reward_model` - the reward predictor,
  an ensemble of them trained on bootstrap resamples, with normalised outputs;
* :func:`sequence_scores` - a reward model's score of each segment: a masked sum of per-step rewards,
  or, for a sequence model such as :class:`SequenceRewardModel` (the hidden state of the last real
  token, Part III), one score per sequence;
* :func:`ranking_loss`, :func:`ranking_to_pairs` - K ranked answers per prompt (InstructGPT, Part III);
* :func:`select_queries`, :func:`label_schedule` - which pairs to ask about, and how many, when;
* :class:`SyntheticRater` - a scripted rater that knows the true reward (optionally with a blind spot);
* :class:`LabelStore` - a crash-safe, append-only file of the reader's own labels;
  :mod:`.ranking_store` - the same for rankings of K answers (Part III), imported explicitly.

The package, one module per concept, and ``agent`` (PPO on a learned reward, imported
explicitly because it needs gymnasium):

* :mod:`.pairs`, :mod:`.bradley_terry`, :mod:`.scoring`, :mod:`.reward_models`, :mod:`.rankings`, :mod:`.queries`,
  :mod:`.label_store`, :mod:`.ranking_store`;
* :mod:`lmlib.preferences.agent` - RL from preferences: clips from PPO's experience, the ensemble as
  the environment's reward, queries on a label schedule.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations
from .bradley_terry import check_epsilon, masked_sum, preference_loss, preference_probability
from .label_store import LabelFileError, LabelStore
from .pairs import (CHOICE_TO_MU, CHOICES, PairBatch, PreferenceDataset, PreferencePair, Segment, bootstrap_indices,
                    collate_segments, label_to_mu, sample_pairs, to_numpy)
from .queries import LabelSchedule, SyntheticRater, label_schedule, select_queries
from .rankings import ranking_loss, ranking_to_pairs
from .reward_models import MLPRewardModel, RewardEnsemble, evaluate_reward_model, pair_loss, train_reward_model
from .scoring import SequenceRewardModel, is_sequence_model, last_token_index, per_step_rewards, sequence_scores

__all__ = [
    "CHOICES", "CHOICE_TO_MU", "Segment", "PreferencePair", "PreferenceDataset", "PairBatch", "collate_segments",
    "label_to_mu", "sample_pairs", "bootstrap_indices", "to_numpy",
    "preference_probability", "masked_sum", "preference_loss", "check_epsilon",
    "per_step_rewards", "sequence_scores", "is_sequence_model", "last_token_index", "SequenceRewardModel",
    "MLPRewardModel", "RewardEnsemble", "pair_loss", "train_reward_model", "evaluate_reward_model",
    "ranking_to_pairs", "ranking_loss",
    "select_queries", "LabelSchedule", "label_schedule", "SyntheticRater",
    "LabelFileError", "LabelStore",
]
