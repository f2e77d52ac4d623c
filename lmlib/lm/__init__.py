"""Language models, Part I chapters 1-6: from n-gram counts to the GPT and its decoding.

* :mod:`.ngram` - n-gram models, smoothing, perplexity (chapter 1);
* :mod:`.neural` - the bigram by gradient descent, Bengio's MLP, embeddings (chapter 3);
* :mod:`.losses` - the one masked next-token cross-entropy and per-token log-probabilities (chapters 3, 5;
  used by fine-tuning, reward models, PPO and DPO later);
* :mod:`.train` - the training loop shared by every model of the book (chapter 3);
* :mod:`.attention` - masks, scaled dot-product and multi-head attention (chapter 4);
* :mod:`.positional` - five positional encodings (chapter 5);
* :mod:`.gpt` - the book's GPT (chapter 5);
* :mod:`.architectures` - encoder-only and encoder-decoder models of the family tree (chapter 5);
* :mod:`.decoding` - greedy, beam, sampling filters, batched generation to an end token (chapter 6).

Imports :mod:`lmlib.text` and the base modules; never reinforcement learning, widgets or experiments.
"""
