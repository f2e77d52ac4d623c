"""The widgets of the book: what a reader clicks in a notebook (ipywidgets, also under Colab's version 7).

* :mod:`.next_tokens` - the n-gram next-token explorer (chapter 1);
* :mod:`.attention_viewer` - attention patterns and head statistics (chapter 4);
* :mod:`.sampler` - the decoding sampler (chapter 6);
* :mod:`.labeling` - the labelling widget in which the reader is the rater (chapter 11, Part III).

Nothing else in lmlib imports this package.
"""
