"""Experiment runners: the code that trains and compares several models and writes a shipped result.

Kept apart from the models they run (:mod:`lmlib.lm`), so a model module never imports an experiment.

* :mod:`.extrapolation` - positional encodings at lengths beyond training (chapter 5);
* :mod:`.family_tree` - encoder vs decoder vs encoder-decoder (chapter 5).
"""
