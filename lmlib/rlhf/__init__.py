"""RLHF of the book's GPT, Part III: instruction tuning (chapter 13), reward models on sequences and best-of-n
(chapter 14), PPO with a per-token KL penalty (chapter 15); DPO (chapter 16, to come).

The small world in which "helpful, honest, harmless" can be measured, and the assistant's format:

* :mod:`.world` - the plays as checkable facts (who speaks where, who says a line, what follows it);
* :mod:`.chat` - turns, examples and the categories of prompt;
* :mod:`.instructions` - the instruction data set built offline from the world, split by fact group;
* :mod:`.judge` - the gold judge: per-facet scores of any answer (never shown to the policy);
* :mod:`.rater` - the synthetic rater: Plackett-Luce rankings of K answers from gold scores, with known noise;
* :mod:`.template` - the chat template with special tokens, and the book GPT resized to them;
* :mod:`.sft` - masked SFT batches for the book's training loop, and batched answers;
* :mod:`.reward` - reward models on the tuned GPT's trunk, scoring prompt + answer at its last token; their
  training from a rater's pairs or rankings, agreement with the gold judge, and best-of-n;
* :mod:`.ppo` - PPO on tokens against a reward model with a per-token KL penalty to the tuned model: the value
  head, the rewards, the adaptive KL controller, the trainer, and the over-optimisation fits.

This layer reuses the ones below it instead of re-implementing them: the token-level interfaces of
:mod:`lmlib.lm` (:func:`lmlib.lm.losses.token_logprobs`, :func:`lmlib.lm.decoding.generate_batch`,
:meth:`lmlib.lm.gpt.GPT.hidden_states`), chapter 10's PPO losses (:mod:`lmlib.rl.losses`) and
chapter 11's preference code (:mod:`lmlib.preferences`, including :class:`lmlib.preferences.SequenceRewardModel`
and :func:`lmlib.preferences.ranking_loss`).
"""
