"""Time one RECODE memory step (reward + update) at the paper's memory size.

Compares, for a batch of 256 embeddings of size 32 and 64 and a full memory of 5e4 atoms (the
paper's Atari size):
  * the JAX step (``replicate.recode.memory.step``, jitted, reward + full Algorithm 1 update);
  * the NumPy reference (``replicate.recode.reference``), one embedding at a time (timed on a
    slice of the batch and scaled to the batch);
  * a FAISS ``IndexFlatL2`` k-NN search (k = 10) of the same batch against the same atoms
    (search alone: no reward, no update).
Measurements alternate between the methods (this machine is shared), and each reports the median
over repetitions. Writes benchmarks/results/recode_memory.json and .md.

Run: ``python benchmarks/recode_memory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from replicate import io
from replicate.recode import memory
from replicate.recode.reference import ReferenceMemory

ROOT = Path(__file__).resolve().parents[1]


def full_memory(cfg: memory.RecodeConfig, dim: int, seed: int):
    """A memory in steady state: filled by streaming clustered embeddings through it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(cfg.memory_size // 4, dim)).astype(np.float32)
    atoms = centres[rng.integers(0, len(centres), cfg.memory_size)] + 0.3 * rng.normal(
        size=(cfg.memory_size, dim)
    ).astype(np.float32)
    counts = rng.exponential(5.0, size=cfg.memory_size).astype(np.float32)
    st = memory.init(cfg, dim)._replace(
        atoms=jnp.asarray(atoms), counts=jnp.asarray(counts), filled=jnp.ones(cfg.memory_size, bool)
    )
    # a few real steps to set d_m^2 and mix
    for t in range(3):
        batch = centres[rng.integers(0, len(centres), 256)] + 0.3 * rng.normal(size=(256, dim)).astype(np.float32)
        st, _ = memory.checked_step(cfg, st, batch, jax.random.PRNGKey(t))
    return st, centres, rng


def bench(dim: int, batch: int, memory_size: int, reps: int, ref_slice: int) -> dict:
    import faiss

    cfg = memory.RecodeConfig(memory_size=memory_size)
    st, centres, rng = full_memory(cfg, dim, seed=dim)
    e = centres[rng.integers(0, len(centres), batch)] + 0.3 * rng.normal(size=(batch, dim)).astype(np.float32)
    ej = jnp.asarray(e)
    noise = memory.draw_noise(cfg, jax.random.PRNGKey(123), batch)

    def jax_step():
        s, out = memory.step(cfg, st, ej, noise)
        jax.block_until_ready((s, out))

    jax_step()  # compile
    query = jax.jit(lambda s, x: memory.query(cfg, s, x))  # k-NN + pseudo-counts (rewards), no update

    def jax_query():
        jax.block_until_ready(query(st, ej))

    jax_query()
    index = faiss.IndexFlatL2(dim)
    index.add(np.asarray(st.atoms))
    index.search(e, cfg.k)

    ref = ReferenceMemory(cfg, dim)
    ref.atoms[:] = np.asarray(st.atoms, np.float64)
    ref.counts[:] = np.asarray(st.counts, np.float64)
    ref.filled[:] = np.asarray(st.filled)
    ref.dm2, ref.dm2_ready = float(st.dm2), True
    g = np.asarray(noise.g, np.float64)
    u = np.asarray(noise.u, np.float64)

    t_jax, t_faiss, t_ref, t_query = [], [], [], []
    for r in range(reps):
        t0 = time.perf_counter()
        jax_step()
        t_jax.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jax_query()
        t_query.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.search(e, cfg.k)
        t_faiss.append(time.perf_counter() - t0)
        if r < max(2, reps // 4):
            t0 = time.perf_counter()
            for i in range(ref_slice):
                ref.step(e[i].astype(np.float64), u[i], g)
            t_ref.append((time.perf_counter() - t0) * batch / ref_slice)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    res = {
        "dim": dim,
        "batch": batch,
        "memory_size": memory_size,
        "k": cfg.k,
        "jax_step_ms": 1e3 * med(t_jax),
        "jax_knn_and_reward_ms": 1e3 * med(t_query),
        "faiss_search_ms": 1e3 * med(t_faiss),
        "numpy_reference_ms": 1e3 * med(t_ref),
        "jax_step_ms_min": 1e3 * min(t_jax),
        "faiss_search_ms_min": 1e3 * min(t_faiss),
        "reps": reps,
        "numpy_reference_embeddings_timed": ref_slice,
    }
    res["jax_over_faiss"] = res["jax_step_ms"] / res["faiss_search_ms"]
    res["jax_knn_and_reward_over_faiss"] = res["jax_knn_and_reward_ms"] / res["faiss_search_ms"]
    res["numpy_over_jax"] = res["numpy_reference_ms"] / res["jax_step_ms"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--memory-size", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)
    import faiss

    reps = 5 if args.quick else 21
    rows = [bench(d, args.batch, args.memory_size, reps, ref_slice=16) for d in (32, 64)]
    meta = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "python": sys.version.split()[0],
        "note": "shared 2-core machine; methods measured alternately; medians",
    }
    out_dir = ROOT / "benchmarks" / "results"
    io.write_json(out_dir / "recode_memory.json", {"results": rows, "meta": meta})
    lines = [
        "# RECODE memory step vs NumPy reference vs FAISS search",
        "",
        f"Memory {args.memory_size} atoms (paper's Atari size), batch {args.batch}, k = 10, {meta['backend']} "
        f"({meta['cpu_count']} cores, shared; FAISS threads {meta['faiss_threads']}), "
        f"jax {meta['jax']}, faiss {meta['faiss']}.",
        "JAX step = rewards + the full Algorithm 1 update for the whole batch. FAISS = IndexFlatL2 k-NN search alone.",
        "NumPy reference = Algorithm 1 one embedding at a time (timed on 16 embeddings, scaled to the batch). Medians.",
        "",
        "| dim | JAX step (ms) | JAX k-NN + rewards only (ms) | FAISS search (ms) | NumPy reference (ms) "
        "| JAX step / FAISS | JAX k-NN+rewards / FAISS | NumPy / JAX step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['jax_step_ms']:.1f} | {r['jax_knn_and_reward_ms']:.1f} | {r['faiss_search_ms']:.1f} | "
            f"{r['numpy_reference_ms']:.0f} | {r['jax_over_faiss']:.2f} | {r['jax_knn_and_reward_over_faiss']:.2f} "
            f"| {r['numpy_over_jax']:.0f} |"
        )
    goal = all(r["jax_over_faiss"] <= 1.0 for r in rows)
    lines += ["", f"Goal (JAX step no slower than FAISS search alone): {'met' if goal else 'not met'}."]
    io.write_text(out_dir / "recode_memory.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
