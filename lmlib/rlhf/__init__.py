"""RLHF of the book's GPT, Part III (chapters 13-16, to come): instruction tuning, reward models on sequences,
PPO with a per-token KL penalty, DPO.

This layer reuses the ones below it instead of re-implementing them: the token-level interfaces of
:mod:`lmlib.lm` (:func:`lmlib.lm.losses.token_logprobs`, :func:`lmlib.lm.decoding.generate_batch`,
:meth:`lmlib.lm.gpt.GPT.hidden_states`), chapter 10's PPO losses (:mod:`lmlib.rl.losses`) and
chapter 11's preference code (:mod:`lmlib.preferences`, including :class:`lmlib.preferences.SequenceRewardModel`
and :func:`lmlib.preferences.ranking_loss`).
"""
