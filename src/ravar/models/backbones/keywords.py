"""Words of a referring description, and its keywords: the content words left once stop words
(articles, prepositions, pronouns, auxiliaries, conjunctions...) are removed.

Words that pick a person out are never stop words: colours, sizes, and the words of position
("left", "behind", "front", "middle", "background"...), even where they are prepositions.
"""

from __future__ import annotations

import re

# Function words that carry no appearance or position: dropped from the keywords.
STOP_WORDS: frozenset[str] = frozenset(
    str.split(
        """
    a an the this that these those some any each every all both either neither no another other
    such what which whose whom who whoever whatever
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves one
    is am are was were be been being isn aren wasn weren
    do does did doing done don doesn didn
    have has had having haven hasn hadn
    will would shall should can could may might must ll ve re d s t m
    not nor or and but if then than so too very just only also yet still even
    of in on at to from by for with without into onto upon about as off out up down
    over through during before after against among via per within along across toward towards
    around while where when whereas whether how why because though although until unless
    here there get gets got getting like
    """
    )
)

# Position words that are also prepositions or adverbs: kept as keywords on purpose.
POSITION_WORDS: frozenset[str] = frozenset(
    str.split(
        """
    left right front back behind beside besides near next above below under beneath between
    top bottom middle center centre side corner background foreground far close inside outside
    """
    )
)

_PIECES = re.compile(r"[^\W\d_]+|\d+|[^\w\s]")  # letter runs, digit runs, single punctuation marks
_LETTERS = re.compile(r"[^\W\d_]+")


def split_words(text: str) -> list[str]:
    """The lower-cased pieces of `text`: letter runs, digit runs and punctuation marks, in order
    ("A man's T-shirt, 2" -> ["a", "man", "'", "s", "t", "-", "shirt", ",", "2"])."""
    return _PIECES.findall(text.lower())


def letter_words(text: str) -> list[str]:
    """The lower-cased letter runs of `text` (split on everything that is not a letter)."""
    return _LETTERS.findall(text.lower())


def is_keyword(word: str) -> bool:
    """Whether one lower-cased piece is a keyword: a letter word of two or more letters that is
    not a stop word (position words always are keywords)."""
    if word in POSITION_WORDS:
        return True
    return len(word) >= 2 and word.isalpha() and word not in STOP_WORDS


def keyword_positions(words: list[str]) -> list[int]:
    """Indices into `words` of the first occurrence of every keyword, in order."""
    seen: set[str] = set()
    out: list[int] = []
    for i, w in enumerate(words):
        if is_keyword(w) and w not in seen:
            seen.add(w)
            out.append(i)
    return out


def extract_keywords(text: str) -> list[str]:
    """The keywords of a description, lower-cased, each once, in order of first appearance
    ("The man in the blue shirt on the left" -> ["man", "blue", "shirt", "left"])."""
    words = split_words(text)
    return [words[i] for i in keyword_positions(words)]
