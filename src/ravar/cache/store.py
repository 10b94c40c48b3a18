"""On-disk feature stores: what frozen backbones computed once, read back memory-mapped.

A store is a folder with a `manifest.json` (the identity of what produced the features: backbone,
weights' hash, clip-sampling settings, dataset files) and arrays saved as `.npy` files that are
opened with `numpy.load(mmap_mode="r")`, so a worker process touches only the rows it reads.

Visual store (per split, one row per instance in the order of `annotations/<split>.jsonl`)::

    manifest.json
    <split>/chunk-00000.npy     [n, K, T, Q, C] float16: the backbone's tokens of K clips
    <split>/frames.npy          [N, K, T] int64: the frame numbers each clip was sampled at
    <split>/image_size.npy      [N, 2] int64: (width, height) of the video

Text store (keyed by the sentence itself)::

    manifest.json
    texts.json                  {"texts": [...], "keywords": [[...], ...]}  (row order)
    tokens.npy                  [sum L, C] float16: contextual token embeddings, row after row
    keywords.npy                [sum K, C] float16: keyword embeddings, row after row
    sentence.npy                [N, C] float16
    offsets.npy                 [N + 1, 2] int64: start of each row in tokens / keywords
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ravar.errors import RavarError
from ravar.util.io import read_json, remove_stale_temps, temp_sibling, write_json

STORE_FORMAT = "ravar-feature-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"float16": np.float16, "float32": np.float32}


class CacheError(RavarError):
    """A feature store is missing, incomplete, or was made by something else than the model."""


def module_fingerprint(module: nn.Module) -> str:
    """Hash (blake2b, hex) of a module's class and of every tensor of its state dict (names,
    dtypes, shapes and bytes): equal for the same weights, different after any change."""
    h = hashlib.blake2b(digest_size=16)
    h.update(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> str:
    """Hash (blake2b, hex) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity_key(identity: Mapping[str, Any]) -> str:
    """Short stable name of an identity: the folder name a store with it gets."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return f"{identity['kind']}-{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"


def _differences(have: Any, want: Any, prefix: str = "") -> list[str]:
    """Human-readable list of the keys where two identities differ."""
    if isinstance(have, Mapping) and isinstance(want, Mapping):
        out: list[str] = []
        for key in sorted(set(have) | set(want)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in have or key not in want:
                out.append(f"{name} only in the {'model' if key in want else 'store'}")
            else:
                out.extend(_differences(have[key], want[key], name))
        return out
    return [] if have == want else [f"{prefix}: store {have!r}, model {want!r}"]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the store in `folder` (CacheError when missing or not a store's)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise CacheError(f"{path}: missing (not a complete feature store)")
    manifest = read_json(path, error=CacheError)
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise CacheError(f"{path}: not a {STORE_FORMAT} manifest")
    if manifest.get("version") != STORE_VERSION:
        raise CacheError(
            f"{path}: store format version {manifest.get('version')}, this ravar reads "
            f"{STORE_VERSION}: rebuild it with `ravar cache`"
        )
    return manifest


def find_store(root: Path, identity: Mapping[str, Any]) -> tuple[Path | None, list[str]]:
    """The store under `root` made with exactly `identity` (or None), and, when there is none,
    one line per store of the same kind saying how it differs."""
    exact = root / identity_key(identity)
    if (exact / MANIFEST).is_file():
        manifest = read_manifest(exact)
        if manifest["identity"] == identity:
            return exact, []
    reasons = []
    if root.is_dir():
        for path in sorted(root.glob(f"{identity['kind']}-*/{MANIFEST}")):
            try:
                have = read_manifest(path.parent)["identity"]
            except CacheError as e:
                reasons.append(str(e))
                continue
            diff = _differences(have, identity)
            if diff:
                reasons.append(f"{path.parent}: " + "; ".join(diff))
    return None, reasons


class StoreWriter:
    """Writes a store into a temporary sibling folder (`ravar.util.io.temp_sibling`) and renames
    it into place at `commit()`, so that a killed `ravar cache` never leaves a store that looks
    complete (the next build of the same store removes what it left)."""

    def __init__(self, folder: Path, identity: Mapping[str, Any], dtype: str) -> None:
        if dtype not in DTYPES:
            raise CacheError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.folder = folder
        remove_stale_temps(folder)
        self.tmp = temp_sibling(folder)
        self.identity = dict(identity)
        self.dtype = dtype
        self.tmp.mkdir(parents=True)
        self.extra: dict[str, Any] = {}

    def save(self, relative: str, array: np.ndarray) -> None:
        """Write one array file of the store."""
        path = self.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array, allow_pickle=False)

    def save_json(self, relative: str, data: Any) -> None:
        """Write one JSON file of the store."""
        write_json(self.tmp / relative, data, indent=None)

    def commit(self) -> Path:
        """Write the manifest and move the store into place (replacing an older one)."""
        manifest = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "dtype": self.dtype,
            "identity": self.identity,
            **self.extra,
        }
        write_json(self.tmp / MANIFEST, manifest)
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)
        return self.folder


def _load(path: Path, mmap: bool = True) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(
            f"{path}: unreadable feature array ({e}); rebuild with `ravar cache`"
        ) from None


class VisualSplit:
    """The visual features of one split: `features(row)` -> `[K, T, Q, C]`, `frames[row]` ->
    `[K, T]` frame numbers, `image_size[row]` -> (width, height). Chunks are memory-mapped on
    first use (after a DataLoader worker has started, so each process maps its own)."""

    def __init__(self, folder: Path, chunk_rows: int, rows: int) -> None:
        self.folder = folder
        self.chunk_rows = chunk_rows
        self.rows = rows
        self.frames = _load(folder / "frames.npy", mmap=False)  # [N, K, T]
        self.image_size = _load(folder / "image_size.npy", mmap=False)  # [N, 2]
        if len(self.frames) != rows or len(self.image_size) != rows:
            raise CacheError(f"{folder}: index files do not have {rows} rows")
        self._chunks: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.rows

    def features(self, row: int) -> np.ndarray:
        """`[K, T, Q, C]` features of instance `row` (a memory-mapped view)."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} outside the {self.rows} rows of {self.folder}")
        c, r = divmod(row, self.chunk_rows)
        chunk = self._chunks.get(c)
        if chunk is None:
            chunk = self._chunks[c] = _load(self.folder / f"chunk-{c:05d}.npy")
        return chunk[r]

    def __getstate__(self) -> dict[str, Any]:  # workers map their own chunks
        return {**self.__dict__, "_chunks": {}}


class VisualStore:
    """A visual feature store opened for reading."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.splits: dict[str, dict[str, Any]] = self.manifest.get("splits", {})

    def split(self, name: str) -> VisualSplit:
        """The features of split `name` (CacheError if the store has none)."""
        info = self.splits.get(name)
        if info is None:
            raise CacheError(
                f"{self.folder}: no features for split {name!r} (it has {sorted(self.splits)}); "
                f"run `ravar cache ... --split {name}`"
            )
        return VisualSplit(self.folder / name, int(info["chunk_rows"]), int(info["rows"]))


class TextStore:
    """A text feature store opened for reading: `get(text)` -> (tokens [L, C], sentence [C],
    keywords [K, C], keyword strings), or None for a sentence it does not hold."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        index = read_json(folder / "texts.json", error=CacheError)
        try:
            texts, keywords = index["texts"], index["keywords"]
        except (KeyError, TypeError):
            where = folder / "texts.json"
            raise CacheError(f"{where}: needs keys 'texts' and 'keywords'") from None
        self.rows = {t: i for i, t in enumerate(texts)}
        self.keyword_strings: list[list[str]] = keywords
        self.tokens = _load(folder / "tokens.npy")  # [sum L, C]
        self.keywords = _load(folder / "keywords.npy")  # [sum K, C]
        self.sentence = _load(folder / "sentence.npy")  # [N, C]
        self.offsets = _load(folder / "offsets.npy", mmap=False)  # [N + 1, 2]
        if len(self.offsets) != len(texts) + 1 or len(keywords) != len(texts):
            raise CacheError(f"{folder}: index files disagree on the number of sentences")

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, text: str) -> bool:
        return text in self.rows

    def get(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
        """The cached features of `text`, or None."""
        i = self.rows.get(text)
        if i is None:
            return None
        (t0, k0), (t1, k1) = self.offsets[i], self.offsets[i + 1]
        return self.tokens[t0:t1], self.sentence[i], self.keywords[k0:k1], self.keyword_strings[i]
