"""CPU backends that run here: ONNX Runtime and OpenVINO, from evalkit's own export.

``reranker.backend=onnx|openvino`` (with ``reranker.quantize=none|int8``):

1. the model is loaded once with sentence-transformers (tokenizer, pooling, normalisation
   and max length come from there, exactly as the torch backend uses them);
2. its transformer is exported with ``torch.onnx.export`` (fp32, eager attention, dynamic
   batch and sequence axes) and, for ``int8``, dynamically quantised with
   ``onnxruntime.quantization.quantize_dynamic`` (int8 weights with per-channel scales,
   activations quantised per batch at run time);
3. exports are cached under ``<cache>/onnx/<key>/``, the key being the model fingerprint
   (path or hub revision), the model kind, the opset, the quantisation and the torch
   version -- like the pair-score cache, a different model never reuses an export;
4. the file runs in ONNX Runtime (``onnxruntime``) or OpenVINO (``openvino``, which reads
   ONNX directly), on the CPU.

The export, the quantised model and both runtimes are checked against torch on identical
pairs in ``tests/test_backends.py`` and benchmarked in ``benchmarks/backends.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

import numpy as np

from evalkit.errors import ModelError, problem
from evalkit.models.batches import TimeSplit
from evalkit.models.tokens import TextInputs
from evalkit.rerank.cross_encoder import PairScorer

log = logging.getLogger(__name__)

OPSET = 17
# part of the cache key: a new recipe re-exports
EXPORT_RECIPE = "eager-attention|int8-per-channel-reduced-range"
PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}
QUANTIZE = ("none", "int8")


def require(backend: str) -> None:
    """A clear error naming the install command when a backend's runtime is missing."""
    needed = [PACKAGES[backend]] + (["onnx"] if backend in PACKAGES else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(
            problem(
                f"reranker.backend={backend} needs {missing}, which are not installed",
                "reranker.backend",
                f"pip install 'evalkit[{backend}]' (or use backend=torch)",
            )
        )


class _Wrapped:
    """The transformer with plain-tensor inputs and one output, as the exporter wants."""

    @staticmethod
    def build(network, output: str):
        import torch

        class Exportable(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
                result = self.network(input_ids=input_ids, attention_mask=attention_mask, **extra)
                return getattr(result, output)

        return Exportable().eval()


def export_model(network, tokenizer, output: str, target: Path) -> Path:
    """Export ``network`` (a transformers model) to ``target`` (fp32 ONNX)."""
    import torch

    known = ("input_ids", "attention_mask", "token_type_ids")
    names = [n for n in known if n in tokenizer.model_input_names]
    sample = tokenizer(
        ["a short query", "a somewhat longer passage of text"],
        ["first passage", "second"],
        padding=True,
        return_tensors="pt",
    )
    inputs = tuple(sample[n] for n in names)
    # the eager attention exports as plain MatMul/Softmax, which ONNX Runtime's int8 kernels
    # and OpenVINO both run fast (the SDPA export measured slower once quantised)
    previous = getattr(network.config, "_attn_implementation", None)
    if hasattr(network, "set_attn_implementation"):
        network.set_attn_implementation("eager")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shapes: the axes are dynamic
        torch.onnx.export(
            _Wrapped.build(network, output),
            inputs,
            str(target),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    if previous and hasattr(network, "set_attn_implementation"):
        network.set_attn_implementation(previous)
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation (weights int8 offline, activations per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for static quantisation
    try:
        # per-channel weight scales: Spearman 0.997 to fp32 on all-MiniLM-L6-v2 where one
        # scale per tensor gave 0.972 (benchmarks/backends.py)
        # reduce_range: 7-bit weights, so the u8 x s8 multiply-adds that CPUs without VNNI
        # use (AVX2's VPMADDUBSW) cannot saturate; without it an AVX2-only AMD EPYC gave
        # Spearman 0.963 to fp32 where VNNI machines give 0.995 (ONNX Runtime's advice)
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    finally:
        root.setLevel(level)
    return target


def cached_export(
    network, tokenizer, output: str, key: str, quantize: str, cache_dir: Path
) -> Path:
    """The ONNX file for ``key`` (fp32 or int8), exported once into the cache."""
    import torch

    from evalkit.artifacts import build_folder_once
    from evalkit.cache import digest

    if quantize not in QUANTIZE:
        raise ModelError(problem(f"reranker.quantize={quantize!r} is not one of {list(QUANTIZE)}"))
    name = digest(key, output, OPSET, quantize, EXPORT_RECIPE, torch.__version__)[:24]
    folder = Path(cache_dir) / "onnx" / name

    def build(target: Path) -> None:
        fp32 = export_model(network, tokenizer, output, target / "model_fp32.onnx")
        if quantize == "int8":
            quantize_int8(fp32, target / "model.onnx")
            fp32.unlink()
            fp32.with_suffix(".onnx.data").unlink(missing_ok=True)
        else:
            fp32.rename(target / "model.onnx")
        (target / "export.json").write_text(
            json.dumps({"key": key, "output": output, "opset": OPSET, "quantize": quantize})
        )

    return build_folder_once(folder, build, name) / "model.onnx"


class Runtime:
    """One ONNX file in ONNX Runtime or OpenVINO on the CPU: ``run(feeds) -> array``."""

    def __init__(self, path: Path, backend: str, threads: int | None = None) -> None:
        require(backend)
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            self.inputs = {i.name for i in self.session.get_inputs()}
        else:
            import openvino as ov

            core = ov.Core()
            config: dict = {"INFERENCE_PRECISION_HINT": "f32"}  # no silent bf16 on new CPUs
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            self.compiled = core.compile_model(str(path), "CPU", config)
            self.inputs = {name for port in self.compiled.inputs for name in port.get_names()}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        if self.backend == "onnx":
            return self.session.run(None, feeds)[0]
        return self.compiled(feeds)[self.compiled.output(0)]


def _feeds(tokenizer, first, second, max_length) -> dict[str, np.ndarray]:
    encoded = tokenizer(
        list(first),
        list(second) if second is not None else None,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}


class OnnxCrossEncoderReranker(PairScorer):
    """A cross-encoder's relevance logit from an ONNX export (ONNX Runtime or OpenVINO);
    the same input path as the torch backend (tokenized once, assembled, token-budget
    batches padded on a worker)."""

    def __init__(
        self,
        runtime: Runtime,
        tokenizer,
        max_length: int | None,
        batch_size: int = 32,
        fingerprint: str = "",
        token_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.fingerprint = fingerprint
        self.device = "cpu"
        super().__init__(
            tokenizer,
            lambda feeds: np.asarray(runtime.run(feeds), dtype=np.float32).reshape(-1),
            max_length,
            batch_size,
            token_dir,
        )


class OnnxBiEncoder:
    """A sentence-transformers bi-encoder whose transformer runs from an ONNX export;
    pooling (mean or CLS) and normalisation follow the model's own modules."""

    def __init__(
        self,
        runtime: Runtime,
        tokenizer,
        max_length: int | None,
        pooling: str = "mean",
        normalize: bool = True,
        batch_size: int = 64,
        fingerprint: str = "",
    ) -> None:
        self.runtime, self.tokenizer, self.max_length = runtime, tokenizer, max_length
        self.pooling, self.normalize = pooling, normalize
        self.batch_size, self.fingerprint, self.device = batch_size, fingerprint, "cpu"
        self.inputs = TextInputs(tokenizer)
        self.split = TimeSplit()

    def take_split(self) -> TimeSplit:
        """Tokenize / wait / forward seconds since the last call."""
        split, self.split = self.split, TimeSplit()
        return split

    def encode(self, texts: list[str], prefix: str = "", quiet: bool = False) -> np.ndarray:
        """Normalised (when the model normalises) embeddings of ``prefix + text``, through
        the shared input path (:func:`~evalkit.models.encoders.encode_texts`: each unique
        text tokenized once, token-budget batches built beside the runtime); ``quiet`` is
        accepted for the torch encoder's signature."""
        from evalkit.models.encoders import encode_texts

        texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        limit = self.max_length or _model_max(self.tokenizer)
        if self.inputs.layout is None:  # a layout the assembly does not know: text batches
            return self._encode_text(texts, limit)
        return encode_texts(
            texts,
            self.inputs,
            limit,
            self.batch_size,
            "cpu",
            lambda arrays: arrays,
            self._embed,
            self.split,
        )

    def _embed(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        hidden = np.asarray(self.runtime.run(feeds), dtype=np.float32)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def _encode_text(self, texts: list[str], limit: int | None) -> np.ndarray:
        """The tokenizer's own call per batch of ``batch_size`` texts, longest first."""
        started = time.perf_counter()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = []
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            out.append(self._embed(_feeds(self.tokenizer, [texts[i] for i in part], None, limit)))
        embeddings = np.concatenate(out)
        result = np.empty_like(embeddings)
        result[order] = embeddings
        seconds = time.perf_counter() - started
        self.split.forward += seconds
        self.split.total += seconds
        return result


def _model_max(tokenizer) -> int | None:
    """The tokenizer's own cut when no max_length is set (None: its sentinel "no limit")."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 1_000_000 else None


def sentence_transformer_parts(model) -> tuple[object, str, bool]:
    """``(transformers model, pooling, normalize)`` of a loaded SentenceTransformer."""
    transformer = model[0]
    network = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    pooling, normalize = "mean", False
    for module in list(model)[1:]:
        kind = type(module).__name__
        if kind == "Pooling":
            mode = getattr(module, "pooling_mode", None) or (
                "cls" if getattr(module, "pooling_mode_cls_token", False) else "mean"
            )
            pooling = "cls" if "cls" in str(mode) else "mean"
            if pooling == "mean" and "mean" not in str(mode):
                raise ModelError(
                    problem(f"pooling '{mode}' is not supported by the ONNX backend; use torch")
                )
        elif kind == "Normalize":
            normalize = True
        elif kind not in ("Pooling", "Normalize"):
            raise ModelError(
                problem(
                    f"the bi-encoder has a {kind} module the ONNX backend does not run",
                    "reranker.backend",
                    "use backend=torch for this model",
                )
            )
    if network is None:
        raise ModelError(problem("cannot find the transformer inside the bi-encoder"))
    return network, pooling, normalize


def onnx_cross_encoder(model, rr, path: str, head_seed: str, fingerprint: str, cache: Path):
    """A loaded CrossEncoder exported once (by its weights) and run by ONNX Runtime or
    OpenVINO; the two runtimes share the export."""
    from evalkit.models.loading import fingerprint as weights_fingerprint

    key = f"{weights_fingerprint(path, rr.revision)}|cross|{head_seed}"
    onnx_file = cached_export(model.model, model.tokenizer, "logits", key, rr.quantize, cache)
    return OnnxCrossEncoderReranker(
        Runtime(onnx_file, rr.backend),
        model.tokenizer,
        max_length=model.max_length,
        batch_size=rr.batch_size,
        fingerprint=fingerprint,
        token_dir=cache / "tokens",
    )


def onnx_bi_encoder(encoder, rr, path: str, fingerprint: str, cache: Path):
    """The bi-encoder's transformer from an ONNX export (pooling and normalisation kept)."""
    from evalkit.models.loading import fingerprint as weights_fingerprint

    require(rr.backend)
    network, pooling, normalize = sentence_transformer_parts(encoder.model)
    tokenizer = encoder.model.tokenizer
    onnx_file = cached_export(
        network.float().cpu(),
        tokenizer,
        "last_hidden_state",
        f"{weights_fingerprint(path, rr.revision)}|bi",
        rr.quantize,
        cache,
    )
    return OnnxBiEncoder(
        Runtime(onnx_file, rr.backend),
        tokenizer,
        max_length=encoder.max_length,
        pooling=pooling,
        normalize=normalize,
        batch_size=rr.batch_size,
        fingerprint=fingerprint,
    )
