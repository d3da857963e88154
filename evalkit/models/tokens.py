"""Tokenize each unique text once; assemble pair inputs from the two id lists.

* :class:`TokenStore` -> the ids of a text (no special tokens, untruncated), computed once
  per tokenizer (:func:`tokenizer_fingerprint`) and kept in memory and on disk, keyed by
  the text's content digest, so rerankers that share a tokenizer share the work.
* :class:`PairLayout` -> ``input_ids`` / ``token_type_ids`` of a (query, document) pair
  from the two id lists, exactly as ``tokenizer(query, doc, truncation=True,
  max_length=L)`` builds them (special tokens, longest-first truncation, truncation side).
  :func:`pair_layout` reads the layout off the tokenizer itself and checks it on probes;
  a tokenizer whose pair encoding is not ``prefix + a + middle + b + suffix`` gets None
  (the caller tokenizes pairs as text and says so once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.cache_root import record_entry
from evalkit.io import atomic_write

log = logging.getLogger(__name__)

DIGEST_BYTES = 16


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides a tokenizer's ids: its class and its Rust pipeline without the
    per-call truncation / padding settings."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        body = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        body = json.dumps(spec, sort_keys=True)
    text = f"{type(tokenizer).__name__}|{body}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


class TokenStore:
    """Ids of each unique text, tokenized once (no special tokens, no truncation).

    Args:
        tokenizer: a Hugging Face tokenizer.
        folder: where shards of ids are kept between runs (one folder per tokenizer
            fingerprint); None keeps them in memory only.
    """

    def __init__(self, tokenizer, folder: Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self.folder = None if folder is None else Path(folder) / self.fingerprint
        self._ids: dict[str, np.ndarray] = {}
        self._disk: dict[bytes, np.ndarray] | None = None
        self._unsaved: dict[bytes, np.ndarray] = {}
        self.texts_tokenized = 0
        self.tokens_tokenized = 0
        self.seconds_tokenizing = 0.0

    def ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The ids of each text (int32), tokenizing only texts not seen before."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._ids]
        if missing:
            self._fill(missing)
        return [self._ids[t] for t in texts]

    def fresh(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Tokenize each distinct text of ``texts`` now, seen or not (a served query is new)."""
        distinct = list(dict.fromkeys(texts))
        ids = dict(zip(distinct, self._tokenize(distinct), strict=True))
        return [ids[t] for t in texts]

    def _fill(self, texts: list[str]) -> None:
        disk = self._load()
        digests = [text_digest(t) for t in texts]
        todo = [(t, d) for t, d in zip(texts, digests, strict=True) if d not in disk]
        for text, digest in zip(texts, digests, strict=True):
            if digest in disk:
                self._ids[text] = disk[digest]
        if todo:
            for (text, digest), ids in zip(todo, self._tokenize([t for t, _ in todo]), strict=True):
                self._ids[text] = ids
                if self.folder is not None:
                    self._unsaved[digest] = ids
                    disk[digest] = ids

    def _tokenize(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        started = time.perf_counter()
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        self.seconds_tokenizing += time.perf_counter() - started
        out = [np.asarray(ids, dtype=np.int32) for ids in encoded]
        self.texts_tokenized += len(out)
        self.tokens_tokenized += sum(len(ids) for ids in out)
        return out

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._disk is not None:
            return self._disk
        self._disk = {}
        if self.folder is None or not self.folder.is_dir():
            return self._disk
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard) as data:
                    digests, offsets, flat = data["digests"], data["offsets"], data["ids"]
            except (OSError, ValueError, KeyError) as error:
                log.warning("token cache shard %s unreadable (%s): set aside", shard, error)
                record_entry(shard.with_suffix(".damaged"))
                shard.rename(shard.with_suffix(".damaged"))
                continue
            for i, digest in enumerate(digests):
                self._disk[digest.tobytes()] = flat[offsets[i] : offsets[i + 1]]
        return self._disk

    def save(self) -> None:
        """Write the ids tokenized since the last save as one new shard (atomic)."""
        if self.folder is None or not self._unsaved:
            return
        entries = list(self._unsaved.items())
        # raw bytes as uint8 rows: numpy's fixed-width bytes type drops trailing NULs
        digests = np.frombuffer(b"".join(d for d, _ in entries), dtype=np.uint8).reshape(
            -1, DIGEST_BYTES
        )
        offsets = np.zeros(len(entries) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(ids) for _, ids in entries])
        flat = np.concatenate([ids for _, ids in entries]).astype(np.int32)

        def write(path: Path) -> None:
            with path.open("wb") as handle:
                np.savez(handle, digests=digests, offsets=offsets, ids=flat)

        shard = self.folder / f"{uuid.uuid4().hex}.npz"
        try:
            record_entry(shard)
            atomic_write(shard, write)
        except OSError as error:  # a full or read-only cache costs a re-tokenization, no more
            log.warning("could not keep token ids in %s: %s", self.folder, error)
            return
        self._unsaved.clear()


@dataclass(frozen=True)
class PairLayout:
    """``prefix + a + middle + b + suffix`` with one token type per part."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[int, int, int, int, int]  # prefix, a, middle, b, suffix
    left: bool = False  # truncation side

    @property
    def added(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def kept(self, n_a, n_b, max_length: int | None):
        """How many ids of ``a`` and ``b`` survive longest-first truncation (the tokenizers
        library's rule: the shorter keeps what it can, the longer gets the rest); ints or
        arrays of lengths, one pair per element."""
        n_a, n_b = np.asarray(n_a, dtype=np.int64), np.asarray(n_b, dtype=np.int64)
        if max_length is None:
            return n_a, n_b
        fits = n_a + n_b + self.added <= max_length
        if fits.all():
            return n_a, n_b
        budget = max(max_length - self.added, 0)
        short, long_ = np.minimum(n_a, n_b), np.maximum(n_a, n_b)
        long_ = np.where(short > budget, short, np.maximum(short, budget - short))
        both_cut = short + long_ > budget  # neither fits in half: halves, the odd one longer
        short = np.where(both_cut, budget // 2, short)
        long_ = np.where(both_cut, budget // 2 + budget % 2, long_)
        a_short = n_a <= n_b
        keep_a = np.where(fits, n_a, np.where(a_short, short, long_))
        keep_b = np.where(fits, n_b, np.where(a_short, long_, short))
        return keep_a, keep_b

    def batch(
        self,
        a: Sequence[np.ndarray],
        b: Sequence[np.ndarray],
        max_length: int | None,
        pad_id: int,
    ) -> dict[str, np.ndarray]:
        """The padded inputs of the pairs ``(a[i], b[i])`` (int64 ``input_ids``,
        ``token_type_ids``, ``attention_mask``), each row as the tokenizer builds it."""
        from evalkit.models.batches import pack

        count = len(a)
        keep_a, keep_b = self.kept(
            np.fromiter(map(len, a), np.int64, count),
            np.fromiter(map(len, b), np.int64, count),
            max_length,
        )
        parts = (
            (self.prefix, self.types[0]),
            (_cut(a, keep_a, self.left), self.types[1]),
            (self.middle, self.types[2]),
            (_cut(b, keep_b, self.left), self.types[3]),
            (self.suffix, self.types[4]),
        )
        return pack(parts, count, pad_id)

    def assemble(
        self, a: np.ndarray, b: np.ndarray, max_length: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, token_type_ids)`` of one pair, as the tokenizer would build them."""
        row = self.batch([a], [b], max_length, pad_id=0)
        return row["input_ids"][0].astype(np.int32), row["token_type_ids"][0].astype(np.int32)


def _cut(ids: Sequence[np.ndarray], keep: np.ndarray, left: bool) -> list[np.ndarray]:
    """Each id list cut to its kept length, from the side the tokenizer truncates."""
    if left:
        return [row[len(row) - k :] for row, k in zip(ids, keep.tolist(), strict=True)]
    return [row[:k] for row, k in zip(ids, keep.tolist(), strict=True)]


def check_room(max_length: int | None, added: int, setting: str) -> None:
    """Refuse a ``max_length`` that leaves no token for the text: the tokenizer itself then
    stops truncating (it returns the whole text), while assembled inputs would hold only
    the special tokens, so the model would score texts it never saw."""
    from evalkit.errors import ModelError, problem

    if max_length is not None and max_length <= added:
        raise ModelError(
            problem(
                f"max_length {max_length} leaves no room for text: the model's inputs add "
                f"{added} special tokens",
                setting,
                f"set {setting} above {added} (these models are trained at 256-512)",
            )
        )


PROBES = (
    ("what is the boundary layer", "the flow near a wall is slowed by viscosity"),
    ("x", "a much longer second text so that truncation has something to remove here"),
    ("a query that is the longer of the two texts in this probe pair", "short"),
)


def pair_layout(tokenizer) -> PairLayout | None:
    """The tokenizer's pair layout, read off its own encoding and checked on probes at
    several lengths; None when its pairs are built some other way."""
    try:
        layout = _read_layout(tokenizer)
        if layout is not None and _agrees(tokenizer, layout):
            return layout
    except Exception as error:  # an exotic tokenizer: fall back, never fail a run here
        log.debug("pair layout of %s not readable: %s", type(tokenizer).__name__, error)
    return None


def _read_layout(tokenizer) -> PairLayout | None:
    first, second = PROBES[0]
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (first, second))
    full = tokenizer(first, second, return_token_type_ids=True)
    ids, types = (
        list(full["input_ids"]),
        list(full.get("token_type_ids") or [0] * len(full["input_ids"])),
    )
    extra = len(ids) - len(a) - len(b)
    for p in range(extra + 1):
        if ids[p : p + len(a)] != a:
            continue
        for m in range(extra - p + 1):
            start = p + len(a) + m
            if ids[start : start + len(b)] == b and start + len(b) + (extra - p - m) == len(ids):
                cuts = (0, p, p + len(a), start, start + len(b), len(ids))
                regions = [types[cuts[i] : cuts[i + 1]] for i in range(5)]
                if any(len(set(r)) > 1 for r in regions):
                    return None
                kinds = tuple(r[0] if r else 0 for r in regions)
                return PairLayout(
                    prefix=tuple(ids[: cuts[1]]),
                    middle=tuple(ids[cuts[2] : cuts[3]]),
                    suffix=tuple(ids[cuts[4] :]),
                    types=kinds,  # type: ignore[arg-type]
                    left=getattr(tokenizer, "truncation_side", "right") == "left",
                )
    return None


def _agrees(tokenizer, layout: PairLayout) -> bool:
    for first, second in PROBES:
        a, b = (
            np.asarray(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (first, second)
        )
        for max_length in (None, layout.added + 3, layout.added + 8, 512):
            kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
            want = tokenizer(first, second, return_token_type_ids=True, **kwargs)
            ids, types = layout.assemble(a, b, max_length)
            if list(ids) != list(want["input_ids"]):
                return False
            if "token_type_ids" in want and list(types) != list(want["token_type_ids"]):
                return False
    return True


@dataclass(frozen=True)
class TextLayout:
    """One text's inputs: ``prefix + ids + suffix``, cut at ``max_length`` as the tokenizer
    cuts a single sequence."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    left: bool = False

    @property
    def added(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def batch(
        self, ids: Sequence[np.ndarray], max_length: int | None, pad_id: int
    ) -> dict[str, np.ndarray]:
        """The padded inputs of the texts whose ids are ``ids`` (int64 arrays)."""
        from evalkit.models.batches import pack

        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        keep = lengths if max_length is None else np.clip(max_length - self.added, 0, lengths)
        parts = ((self.prefix, 0), (_cut(ids, keep, self.left), 0), (self.suffix, 0))
        return pack(parts, len(ids), pad_id)

    def assemble(self, ids: np.ndarray, max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, token_type_ids)`` of one text."""
        row = self.batch([ids], max_length, pad_id=0)
        return row["input_ids"][0].astype(np.int32), row["token_type_ids"][0].astype(np.int32)


def text_layout(tokenizer) -> TextLayout | None:
    """The tokenizer's single-text layout, checked on probes; None when it is not
    ``prefix + ids + suffix``."""
    try:
        text = PROBES[0][1]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full = tokenizer(text)["input_ids"]
        for p in range(len(full) - len(ids) + 1):
            if full[p : p + len(ids)] == ids:
                layout = TextLayout(
                    tuple(full[:p]),
                    tuple(full[p + len(ids) :]),
                    getattr(tokenizer, "truncation_side", "right") == "left",
                )
                break
        else:
            return None
        for first, second in PROBES:
            for probe in (first, second):
                raw = np.asarray(tokenizer(probe, add_special_tokens=False)["input_ids"])
                for max_length in (layout.added + 2, layout.added + 6, 512):
                    want = tokenizer(probe, truncation=True, max_length=max_length)["input_ids"]
                    if layout.assemble(raw, max_length)[0].tolist() != list(want):
                        return None
        return layout
    except Exception as error:
        log.debug("text layout of %s not readable: %s", type(tokenizer).__name__, error)
        return None


class TextInputs:
    """Single texts as model inputs, the shared way: each unique text tokenized once
    (:class:`TokenStore`), ``prefix + ids + suffix`` assembled (:class:`TextLayout`), padded
    and kept to the input names the model takes. ``layout`` is None when the tokenizer's
    single-text layout is not one the assembly knows (callers then tokenize text)."""

    def __init__(self, tokenizer) -> None:
        self.store = TokenStore(tokenizer)
        self.layout = text_layout(tokenizer)
        self.names = set(getattr(tokenizer, "model_input_names", None) or ())
        self.names |= {"input_ids", "attention_mask"}
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)

    def features(self, ids: Sequence[np.ndarray], max_length: int | None) -> dict:
        """One padded batch (int64 arrays) from the texts' ids."""
        features = self.layout.batch(ids, max_length, self.pad_id)
        return {k: v for k, v in features.items() if k in self.names}
