"""Referring expressions: find attribute / position / relation descriptions that single one person
out of a scene, check that they do, and phrase them with varied templates and synonyms.

A query is a dict::

    {"attrs": {"kind": "man", "shirt": "red"},      # all must hold
     "position": "leftmost" | ... | None,           # among the people matching "attrs"
     "relation": {"type": "next_to", "anchor": {"shirt": "yellow"}} | None}

Person descriptions (`person_facts`) carry the attributes plus "x" (box centre, 0..1) and
"depth" (feet height in the image, 0..1; larger = closer to the camera).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ravar.synth import vocab as V

ATTR_KEYS = ("kind", "size", "shirt", "trousers", "hat", "held")
X_MARGIN = 0.06  # min horizontal gap (image widths) for a position word to be clear
DEPTH_MARGIN = 0.05  # min feet-height gap (image heights) for front / back
NOVEL_WORD_PROB = 0.6


def person_facts(attributes: dict[str, Any], box: list[float], depth: float) -> dict[str, Any]:
    """The facts a query is checked against, from a person's attributes and keyframe box."""
    child = attributes["size"] == "child"
    kind = {"male": "boy" if child else "man", "female": "girl" if child else "woman"}
    facts = {
        "kind": kind[attributes["gender"]],
        "size": attributes["size"],
        "shirt": attributes["shirt"],
        "trousers": attributes["trousers"],
        "hat": attributes["hat"] or "none",
        "held": attributes["held"] or "none",
        "x": round(0.5 * (box[0] + box[2]), 5),
        "depth": round(depth, 5),
    }
    return facts


def _matching(people: list[dict], attrs: dict[str, str]) -> list[int]:
    return [i for i, p in enumerate(people) if all(p[k] == v for k, v in attrs.items())]


def _position_pick(people: list[dict], idx: list[int], position: str) -> int | None:
    """Which of the people `idx` the position word picks, or None if it is not clear-cut."""
    by_x = sorted(idx, key=lambda i: people[i]["x"])
    xs = [people[i]["x"] for i in by_x]
    n = len(by_x)
    gaps = np.diff(xs)
    if position in ("leftmost", "rightmost") and n >= 2:
        if position == "leftmost" and gaps[0] >= X_MARGIN:
            return by_x[0]
        if position == "rightmost" and gaps[-1] >= X_MARGIN:
            return by_x[-1]
    elif position in ("second_left", "second_right") and n >= 4:
        j = 1 if position == "second_left" else n - 2
        if gaps[j - 1] >= X_MARGIN and gaps[j] >= X_MARGIN:
            return by_x[j]
    elif position == "middle" and n == 3 and min(gaps) >= X_MARGIN:
        return by_x[1]
    elif position in ("front", "back") and n >= 2:
        by_d = sorted(idx, key=lambda i: people[i]["depth"])
        ds = [people[i]["depth"] for i in by_d]
        if position == "front" and ds[-1] - ds[-2] >= DEPTH_MARGIN:
            return by_d[-1]
        if position == "back" and ds[1] - ds[0] >= DEPTH_MARGIN:
            return by_d[0]
    return None


def resolve(people: list[dict], query: dict[str, Any]) -> list[int]:
    """Indices of the people a query describes (exactly one when the query is good)."""
    idx = _matching(people, query.get("attrs", {}))
    rel = query.get("relation")
    if rel is not None:
        anchors = _matching(people, rel["anchor"])
        if len(anchors) != 1:
            return []
        a = anchors[0]
        ax = people[a]["x"]
        order = sorted(range(len(people)), key=lambda i: people[i]["x"])
        pos = order.index(a)
        if rel["type"] == "next_to":
            near = {order[j] for j in (pos - 1, pos + 1) if 0 <= j < len(order)}
            idx = [i for i in idx if i in near]
        elif rel["type"] == "left_of":
            idx = [i for i in idx if people[i]["x"] < ax - X_MARGIN / 2]
        else:
            idx = [i for i in idx if people[i]["x"] > ax + X_MARGIN / 2]
        idx = [i for i in idx if i != a]
    position = query.get("position")
    if position is not None:
        pick = _position_pick(people, idx, position)
        return [] if pick is None else [pick]
    return idx


def _attr_options(facts: dict[str, Any]) -> list[str]:
    keys = [k for k in ATTR_KEYS if not (k == "held" and facts["held"] == "none")]
    if facts["size"] == "child":
        keys = [k for k in keys if k != "size"] + ["size"]
    return keys


def candidate_queries(people: list[dict], target: int, max_attrs: int = 3) -> list[dict]:
    """Every query of up to `max_attrs` attributes (plus position or relation) that resolves to
    exactly the target."""
    facts = people[target]
    keys = _attr_options(facts)
    out: list[dict] = []
    for n in range(0, max_attrs + 1):
        for subset in combinations(keys, n):
            attrs = {k: facts[k] for k in subset}
            idx = _matching(people, attrs)
            if idx == [target] and n > 0:
                out.append({"attrs": attrs, "position": None, "relation": None})
            elif len(idx) >= 2 and n <= 2:
                for position in V.POSITION_WORDS:
                    q = {"attrs": attrs, "position": position, "relation": None}
                    if resolve(people, q) == [target]:
                        out.append(q)
    for a in range(len(people)):
        if a == target:
            continue
        for anchor_keys in combinations(_attr_options(people[a]), 1):
            anchor = {k: people[a][k] for k in anchor_keys}
            if anchor_keys[0] == "size" or _matching(people, anchor) != [a]:
                continue
            for t_keys in [(), *combinations(keys, 1)]:
                attrs = {k: facts[k] for k in t_keys}
                for rel in V.RELATION_WORDS:
                    q = {
                        "attrs": attrs,
                        "position": None,
                        "relation": {"type": rel, "anchor": anchor},
                    }
                    if resolve(people, q) == [target]:
                        out.append(q)
    return out


def choose_query(rng: np.random.Generator, candidates: list[dict]) -> dict | None:
    """Pick one query: short ones more often, a mix of plain, position and relation styles."""
    if not candidates:
        return None
    styles = {
        "plain": [q for q in candidates if q["position"] is None and q["relation"] is None],
        "position": [q for q in candidates if q["position"] is not None],
        "relation": [q for q in candidates if q["relation"] is not None],
    }
    weights = {"plain": 0.5, "position": 0.3, "relation": 0.2}
    names = [s for s in styles if styles[s]]
    w = np.array([weights[s] for s in names])
    style = names[int(rng.choice(len(names), p=w / w.sum()))]
    pool = styles[style]
    size = np.array([len(q["attrs"]) + (q["relation"] is not None) for q in pool], float)
    p = np.exp(-1.2 * size)
    return pool[int(rng.choice(len(pool), p=p / p.sum()))]


def _a(word: str) -> str:
    """The indefinite article for `word`."""
    return "an" if word[:1] in "aeiou" else "a"


class Phraser:
    """Turns queries into sentences; `novel` mixes in the held-out synonyms."""

    def __init__(self, rng: np.random.Generator, novel: bool = False) -> None:
        self.rng = rng
        self.novel = novel

    def word(self, table: dict, value: str) -> str:
        base, novel = table[value]
        if self.novel and novel and self.rng.random() < NOVEL_WORD_PROB:
            return novel[int(self.rng.integers(len(novel)))]
        return base[int(self.rng.integers(len(base)))]

    def _pick(self, options: list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def noun_phrase(self, attrs: dict[str, str], position: str | None = None) -> str:
        """'tall man in a red shirt with a ball' (no article)."""
        if "kind" in attrs:
            noun = self.word(V.NOUN_WORDS, attrs["kind"])
        elif attrs.get("size") == "child":
            noun = self.word(V.NOUN_WORDS, "child")
        else:
            noun = self.word(V.NOUN_WORDS, "person")
        pre = []
        if attrs.get("size") in V.SIZE_WORDS:
            pre.append(self.word(V.SIZE_WORDS, attrs["size"]))
        mods = []
        if "shirt" in attrs:
            c = self.word(V.COLOUR_WORDS, attrs["shirt"])
            g = self.word(V.GARMENT_WORDS, "shirt")
            mods.append(self._pick([f"in {_a(c)} {c} {g}", f"wearing {_a(c)} {c} {g}", f"in {c}"]))
        if "trousers" in attrs:
            c = self.word(V.COLOUR_WORDS, attrs["trousers"])
            g = self.word(V.GARMENT_WORDS, "trousers")
            mods.append(self._pick([f"in {c} {g}", f"with {c} {g}", f"wearing {c} {g}"]))
        if "hat" in attrs:
            g = self.word(V.GARMENT_WORDS, "hat")
            if attrs["hat"] == "none":
                mods.append(self._pick([f"without {_a(g)} {g}", f"with no {g}"]))
            else:
                c = self.word(V.COLOUR_WORDS, attrs["hat"])
                mods.append(self._pick([f"with {_a(c)} {c} {g}", f"wearing {_a(c)} {c} {g}"]))
        if "held" in attrs:
            o = self.word(V.OBJECT_WORDS, attrs["held"])
            mods.append(self._pick([f"with {_a(o)} {o}", f"who has {_a(o)} {o}"]))
        self.rng.shuffle(mods)
        text = " ".join(pre + [noun])
        if mods:
            text += " " + (" and " if len(mods) == 2 and self.rng.random() < 0.5 else " ").join(
                mods
            )
        if position is not None:
            text += " " + self.word(V.POSITION_WORDS, position)
        return text

    def sentence(self, query: dict[str, Any]) -> str:
        """The referring expression of a query."""
        text = "the " + self.noun_phrase(query["attrs"], query["position"])
        rel = query["relation"]
        if rel is not None:
            text += (
                f" {self.word(V.RELATION_WORDS, rel['type'])} the {self.noun_phrase(rel['anchor'])}"
            )
        if self.rng.random() < 0.15:
            text = text[len("the ") :]
        return text
