"""Time one RECODE memory step (reward + update) at the paper's memory size.

Compares, for batches of 256 and 2048 embeddings of size 32 and 64 and a full memory of 5e4 atoms
(the paper's Atari size) or 2e5 (DM-HARD-8's):
  * the JAX step (``replicate.recode.memory.step``, jitted, reward + full Algorithm 1 update), with
    the sequential update (the default; B runs of Alg. 1 in ``lax.scan``) and the parallel one
    (``RecodeConfig.update = "parallel"``, sequential depth independent of B);
  * the JAX k-NN + pseudo-count query alone (``memory.query``: what the step does before updating);
  * the NumPy reference (``replicate.recode.reference``), one embedding at a time (timed on a
    slice of the batch and scaled to the batch; dim 32, batch 256, 5e4 atoms only);
  * a FAISS ``IndexFlatL2`` k-NN search (k = 10) of the same batch against the same atoms
    (search alone: no reward, no update).
Measurements alternate between the methods (this machine is shared), and each reports the median
over repetitions. Writes benchmarks/results/recode_memory.json and .md.

Run: ``python benchmarks/recode_memory.py [--quick]``. The machine's load (``os.getloadavg``) before and
after is recorded in the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    cfg_par = dataclasses.replace(cfg, update="parallel")
    st, centres, rng = full_memory(cfg, dim, seed=dim)
    e = centres[rng.integers(0, len(centres), batch)] + 0.3 * rng.normal(size=(batch, dim)).astype(np.float32)
    ej = jnp.asarray(e)
    noise = memory.draw_noise(cfg, jax.random.PRNGKey(123), batch)

    def jax_step():
        jax.block_until_ready(memory.step(cfg, st, ej, noise))

    def jax_parallel_step():
        jax.block_until_ready(memory.step(cfg_par, st, ej, noise))

    query = jax.jit(lambda s, x: memory.query(cfg, s, x))  # k-NN + pseudo-counts (rewards), no update

    def jax_query():
        jax.block_until_ready(query(st, ej))

    index = faiss.IndexFlatL2(dim)
    index.add(np.asarray(st.atoms))

    def faiss_search():
        index.search(e, cfg.k)

    timed = {"jax_step": jax_step, "jax_parallel_step": jax_parallel_step, "jax_query": jax_query,
             "faiss": faiss_search}
    for fn in timed.values():
        fn()  # compile / warm up
    with_ref = ref_slice > 0
    if with_ref:
        ref = ReferenceMemory(cfg, dim)
        ref.atoms[:] = np.asarray(st.atoms, np.float64)
        ref.counts[:] = np.asarray(st.counts, np.float64)
        ref.filled[:] = np.asarray(st.filled)
        ref.dm2, ref.dm2_ready = float(st.dm2), True
        g = np.asarray(noise.g, np.float64)
        u = np.asarray(noise.u, np.float64)

    times: dict[str, list[float]] = {name: [] for name in timed}
    t_ref = []
    for r in range(reps):
        for name, fn in timed.items():  # alternate: the machine is shared
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if with_ref and r < max(2, reps // 4):
            t0 = time.perf_counter()
            for i in range(ref_slice):
                ref.step(e[i].astype(np.float64), u[i], g)
            t_ref.append((time.perf_counter() - t0) * batch / ref_slice)

    def med(xs):
        return float(np.median(xs))

    res = {
        "dim": dim,
        "batch": batch,
        "memory_size": memory_size,
        "k": cfg.k,
        "jax_step_ms": 1e3 * med(times["jax_step"]),
        "jax_parallel_step_ms": 1e3 * med(times["jax_parallel_step"]),
        "jax_knn_and_reward_ms": 1e3 * med(times["jax_query"]),
        "faiss_search_ms": 1e3 * med(times["faiss"]),
        "numpy_reference_ms": 1e3 * med(t_ref) if with_ref else None,
        "jax_step_ms_min": 1e3 * min(times["jax_step"]),
        "jax_parallel_step_ms_min": 1e3 * min(times["jax_parallel_step"]),
        "faiss_search_ms_min": 1e3 * min(times["faiss"]),
        "reps": reps,
        "numpy_reference_embeddings_timed": ref_slice if with_ref else 0,
    }
    res["jax_over_faiss"] = res["jax_step_ms"] / res["faiss_search_ms"]
    res["parallel_over_faiss"] = res["jax_parallel_step_ms"] / res["faiss_search_ms"]
    res["sequential_over_parallel"] = res["jax_step_ms"] / res["jax_parallel_step_ms"]
    res["parallel_over_query"] = res["jax_parallel_step_ms"] / res["jax_knn_and_reward_ms"]
    res["jax_knn_and_reward_over_faiss"] = res["jax_knn_and_reward_ms"] / res["faiss_search_ms"]
    res["numpy_over_jax"] = res["numpy_reference_ms"] / res["jax_step_ms"] if with_ref else None
    return res


CASES = (  # (dim, batch, memory_size, NumPy reference embeddings timed)
    (32, 256, 50_000, 8),
    (64, 256, 50_000, 0),
    (32, 2048, 50_000, 0),
    (32, 256, 200_000, 0),
    (32, 2048, 200_000, 0),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--cases", type=int, default=len(CASES), help="run only the first N cases")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per method (default 15, 5 with --quick)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the committed .json")
    args = ap.parse_args(argv)
    if args.report_only:
        res = json.loads((ROOT / "benchmarks" / "results" / "recode_memory.json").read_text())
        write_report(res["results"], res["meta"])
        return 0
    import faiss

    reps = args.reps or (5 if args.quick else 15)
    load_before = os.getloadavg()
    rows = []
    for dim, batch, size, ref_slice in CASES[: args.cases]:
        rows.append(bench(dim, batch, size, reps, ref_slice))
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    meta = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "python": sys.version.split()[0],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "note": "2-core machine; methods measured alternately; medians",
    }
    io.write_json(ROOT / "benchmarks" / "results" / "recode_memory.json", {"results": rows, "meta": meta})
    write_report(rows, meta)
    return 0


def write_report(rows: list[dict], meta: dict) -> None:
    """benchmarks/results/recode_memory.md from the rows and metadata of one run (also: ``--report-only``)."""
    reps = rows[0]["reps"]
    out_dir = ROOT / "benchmarks" / "results"
    lines = [
        "# RECODE memory step (sequential and parallel update) vs its k-NN query vs FAISS search",
        "",
        f"k = 10, {meta['backend']} ({meta['cpu_count']} cores; FAISS threads {meta['faiss_threads']}), "
        f"jax {meta['jax']}, faiss {meta['faiss']}. Load average (1, 5, 15 min) before {meta['load_average_before']}, "
        f"after {meta['load_average_after']} (the benchmark itself keeps both cores busy; above ~2.5 the machine was "
        "shared and absolute times are inflated); the methods were measured alternately, so the ratios are comparable.",
        "JAX step = rewards + the full Algorithm 1 update for the whole batch, with the sequential update (default) "
        "or the parallel one (`RecodeConfig.update = \"parallel\"`). Query = `memory.query` alone (k-NN + "
        "pseudo-counts). FAISS = IndexFlatL2 k-NN search alone. NumPy reference = Algorithm 1 one embedding at a "
        "time (timed on 8 embeddings, scaled to the batch). Medians over "
        f"{reps} repetitions.",
        "",
        "| dim | batch | atoms | sequential step (ms) | parallel step (ms) | query (ms) | FAISS (ms) | NumPy ref. (ms) "
        "| sequential / FAISS | parallel / FAISS | query / FAISS | sequential / parallel | parallel / query |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = f"{r['numpy_reference_ms']:.0f}" if r["numpy_reference_ms"] is not None else "-"
        lines.append(
            f"| {r['dim']} | {r['batch']} | {r['memory_size']} | {r['jax_step_ms']:.1f} | "
            f"{r['jax_parallel_step_ms']:.1f} | "
            f"{r['jax_knn_and_reward_ms']:.1f} | {r['faiss_search_ms']:.1f} | {ref} | {r['jax_over_faiss']:.2f} | "
            f"{r['parallel_over_faiss']:.2f} | {r['jax_knn_and_reward_over_faiss']:.2f} | "
            f"{r['sequential_over_parallel']:.1f} | {r['parallel_over_query']:.2f} |"
        )
    met = [r for r in rows if r["parallel_over_faiss"] <= 1.0]
    lines += ["", f"Goal (parallel step no slower than FAISS search alone): met in {len(met)} of {len(rows)} cases."]
    if len(rows) < len(CASES):
        lines.append(f"Not run this time (machine time): {[c[:3] for c in CASES[len(rows):]]} (dim, batch, atoms).")
    io.write_text(out_dir / "recode_memory.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
