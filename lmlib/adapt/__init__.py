"""Adaptation, chapter 8 (to come): fine-tuning, LoRA, distillation and quantization of the book's GPT.

The home of the chapter's library code, so that it lands in the layout of the book; it may import
:mod:`lmlib.text` and :mod:`lmlib.lm`, and is imported by :mod:`lmlib.rlhf`.
"""
