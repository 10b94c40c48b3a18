"""Words of the referring expressions: synonyms per attribute value, split into the ones every
split uses ("base") and held-out ones that only `test_novel` uses ("novel")."""

from __future__ import annotations

# value -> (base synonyms, novel synonyms)
COLOUR_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red",), ("crimson", "scarlet")),
    "green": (("green",), ("emerald",)),
    "blue": (("blue",), ("azure", "cobalt")),
    "yellow": (("yellow",), ("golden", "lemon")),
    "orange": (("orange",), ("tangerine",)),
    "purple": (("purple",), ("violet",)),
    "white": (("white",), ("ivory",)),
    "black": (("black",), ("jet-black", "ebony")),
    "pink": (("pink",), ("rose",)),
    "grey": (("grey", "gray"), ("ash",)),
    "brown": (("brown",), ("chocolate",)),
}
NOUN_WORDS = {
    "man": (("man", "guy"), ("gentleman", "fellow")),
    "woman": (("woman", "lady"), ("female",)),
    "boy": (("boy",), ("lad",)),
    "girl": (("girl",), ("lass",)),
    "child": (("child", "kid"), ("youngster",)),
    "person": (("person", "one"), ("individual", "figure")),
}
SIZE_WORDS = {"tall": (("tall",), ("lanky",)), "short": (("short",), ("petite",))}
GARMENT_WORDS = {
    "shirt": (("shirt", "top", "t-shirt"), ("jersey", "tee")),
    "trousers": (("trousers", "pants"), ("slacks",)),
    "hat": (("hat", "cap"), ("beanie",)),
}
OBJECT_WORDS = {
    "ball": (("ball",), ("football",)),
    "cup": (("cup", "mug"), ("beaker",)),
    "box": (("box",), ("crate", "carton")),
    "phone": (("phone",), ("mobile", "handset")),
}
POSITION_WORDS = {
    "leftmost": (("on the left", "on the far left", "furthest to the left"), ("at the left edge",)),
    "rightmost": (
        ("on the right", "on the far right", "furthest to the right"),
        ("at the right edge",),
    ),
    "second_left": (("second from the left",), ("second from the left side",)),
    "second_right": (("second from the right",), ("second from the right side",)),
    "middle": (("in the middle", "in the centre"), ("halfway along",)),
    "front": (("in front", "closest to the camera", "nearest to us"), ("in the foreground",)),
    "back": (("at the back", "furthest from the camera"), ("in the background",)),
}
RELATION_WORDS = {
    "next_to": (("next to", "beside"), ("alongside",)),
    "left_of": (("to the left of", "left of"), ("on the left-hand side of",)),
    "right_of": (("to the right of", "right of"), ("on the right-hand side of",)),
}

# Verbs and nouns of the rendered action classes: no expression may contain them.
ACTION_WORDS = frozenset(
    [
        "stand",
        "standing",
        "stands",
        "walk",
        "walking",
        "walks",
        "run",
        "running",
        "runs",
        "jog",
        "jogging",
        "sit",
        "sitting",
        "sits",
        "seated",
        "bend",
        "bending",
        "bends",
        "bow",
        "bowing",
        "crouch",
        "crouching",
        "kneel",
        "kneeling",
        "jump",
        "jumping",
        "leap",
        "leaping",
        "lie",
        "lying",
        "lies",
        "sleep",
        "sleeping",
        "fall",
        "falling",
        "falls",
        "get",
        "getting",
        "up",
        "carry",
        "carrying",
        "hold",
        "holding",
        "holds",
        "lift",
        "lifting",
        "pick",
        "picking",
        "put",
        "putting",
        "throw",
        "throwing",
        "throws",
        "point",
        "pointing",
        "answer",
        "answering",
        "call",
        "calling",
        "wave",
        "waving",
        "waves",
        "clap",
        "clapping",
        "shake",
        "shaking",
        "hug",
        "hugging",
        "push",
        "pushing",
        "talk",
        "talking",
        "talks",
        "chat",
        "chatting",
        "watch",
        "watching",
        "looking",
    ]
)


def all_words(table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], value: str) -> set[str]:
    """Every synonym (base and novel) of `value` in `table`."""
    base, novel = table[value]
    return set(base) | set(novel)


def novel_phrases() -> set[str]:
    """Every held-out phrase (only test_novel uses them)."""
    out: set[str] = set()
    for table in (
        COLOUR_WORDS,
        NOUN_WORDS,
        SIZE_WORDS,
        GARMENT_WORDS,
        OBJECT_WORDS,
        POSITION_WORDS,
        RELATION_WORDS,
    ):
        for _, novel in table.values():
            out.update(novel)
    return out
