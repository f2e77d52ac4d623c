"""Safety problems, chapter 12 (to come): the concrete problems of AI safety as small labs.

The home of the chapter's environments and measurements; it may import every layer below it
(:mod:`lmlib.rl`, :mod:`lmlib.lm`, :mod:`lmlib.preferences`, :mod:`lmlib.rlhf`).
"""
