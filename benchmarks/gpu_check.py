"""One device check of the scale path (issue 11): what the ``full`` profiles need, measured in one run.

``python benchmarks/gpu_check.py [--quick] [--budget-s 420]`` (``make gpu-check``) measures, on whatever
JAX's default backend is (a GPU when one is lent; the CPU otherwise, where ``--quick`` keeps it short):

1. RECODE memory: the step (sequential and, where available, the parallel update) against its own k-NN +
   reward query and against a peer k-NN from the same run (torch ``cdist`` + ``topk`` on the same device,
   else FAISS ``IndexFlatL2`` on the CPU), 50k and 200k atoms, batch 256 and 2048, dim 32;
2. the DeepSea agent (PPO + RECODE vs no bonus, jitted end to end): environment steps per second;
3. the Atari agent (notebook 13's, with learning): agent steps per second and the collect/update split
   (needs ale-py or envpool; skipped otherwise);
4. PAC: samples/s and MFU per size preset, float32 and bfloat16 compute (``PerceiverConfig.compute_dtype``),
   counting the FLOPs PAC really computes (``perceiver.train_flops_per_sample``);
5. the Gemma 3 270M forward at 128 / 512 / 2048 tokens (if its weights package is installed).

Each part runs under a share of ``--budget-s`` and records ``skipped: <why>`` instead of failing the whole
check when a dependency is missing (the GPU image has jax/flax/optax/torch, not gymnax, ale-py or gguf:
carry them as wheels, see the device notes in CONTRIBUTING). Writes ``benchmarks/results/gpu_check.{json,md}``
with the device name; the md is linked from the README.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replicate.benchmarking import time_call, write_results  # noqa: E402

# Dense peak TFLOP/s by device and compute dtype (vendor datasheets, SXM parts; fp32 = TF32 tensor cores,
# which XLA uses for float32 matmuls on Hopper at default precision).
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 494.5}, "H200": {"bfloat16": 989.0, "float32": 494.5},
               "A100": {"bfloat16": 312.0, "float32": 156.0}}


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '?')}"


def peak_tflops(dtype: str) -> float | None:
    kind = getattr(jax.devices()[0], "device_kind", "")
    for name, peaks in PEAK_TFLOPS.items():
        if name in kind:
            return peaks[dtype]
    return None


def skipped(part: str, why: str) -> dict:
    return {"part": part, "case": "-", "candidate": "-", "baseline": "-", "ratio": "-", "note": f"skipped: {why}"}


# ----------------------------------------------------------------------------- 1. RECODE memory


def recode_rows(quick: bool, deadline: float) -> list[dict]:
    from replicate.recode import memory

    rows = []
    sizes = [(5_000, 256)] if quick else [(50_000, 256), (50_000, 2048), (200_000, 256), (200_000, 2048)]
    has_parallel = "update" in {f.name for f in dataclasses.fields(memory.RecodeConfig)}
    for i, (n_atoms, batch) in enumerate(sizes):
        if i and time.monotonic() > deadline:
            rows.append(skipped("recode", f"time budget spent before {n_atoms} atoms x batch {batch}"))
            continue
        dim = 32
        rng = np.random.default_rng(0)
        atoms = rng.normal(size=(n_atoms, dim)).astype(np.float32)
        e = jnp.asarray(atoms[rng.integers(0, n_atoms, batch)] + 0.1 * rng.normal(size=(batch, dim)).astype(np.float32))
        base_cfg = memory.RecodeConfig(memory_size=n_atoms)
        state = memory.init(base_cfg, dim)._replace(
            atoms=jnp.asarray(atoms), counts=jnp.asarray(rng.exponential(5.0, n_atoms).astype(np.float32)),
            filled=jnp.ones(n_atoms, bool), dm2=jnp.asarray(1.0, jnp.float32))
        noise = memory.draw_noise(base_cfg, jax.random.PRNGKey(1), batch)
        query = jax.jit(lambda s, x, c=base_cfg: memory.query(c, s, x))
        t_query = time_call(lambda: query(state, e), repeats=3, min_time_s=0.2)["median_s"]
        knn_name, t_knn = peer_knn(np.asarray(state.atoms), np.asarray(e), base_cfg.k)
        modes = ["sequential"] + (["parallel"] if has_parallel else [])
        for mode in modes:
            cfg = dataclasses.replace(base_cfg, update=mode) if has_parallel else base_cfg
            if mode == "sequential" and batch > 256 and not quick and jax.default_backend() == "cpu":
                continue  # B sequential iterations at 200k atoms take minutes on a CPU
            t = time_call(lambda c=cfg: memory.step(c, state, e, noise), repeats=3, min_time_s=0.2)["median_s"]
            case = f"{n_atoms} atoms, batch {batch}, dim {dim}"
            rows.append({"part": "recode", "case": case, "candidate": f"{mode} step {t * 1e3:.2f} ms",
                         "baseline": f"own query {t_query * 1e3:.2f} ms", "ratio": t / t_query, "note": ""})
            if t_knn is not None:
                rows.append({"part": "recode", "case": case, "candidate": f"{mode} step {t * 1e3:.2f} ms",
                             "baseline": f"{knn_name} {t_knn * 1e3:.2f} ms", "ratio": t / t_knn, "note": ""})
    return rows


def peer_knn(atoms: np.ndarray, e: np.ndarray, k: int) -> tuple[str, float | None]:
    """Seconds per k-NN search by a peer library on the same data: torch on the GPU, else FAISS on the CPU."""
    try:
        import torch

        dev = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
        if dev == "cuda":
            a, q = torch.as_tensor(atoms, device=dev), torch.as_tensor(e, device=dev)

            def run():
                d = torch.cdist(q, a)
                out = torch.topk(d, k, largest=False)
                torch.cuda.synchronize()
                return out

            run()
            t0 = time.perf_counter()
            for _ in range(20):
                run()
            return "torch cdist+topk (cuda)", (time.perf_counter() - t0) / 20
    except ImportError:
        pass
    try:
        import faiss

        index = faiss.IndexFlatL2(atoms.shape[1])
        index.add(atoms)
        return "FAISS IndexFlatL2 search", time_call(lambda: index.search(e, k), repeats=3, min_time_s=0.2)["median_s"]
    except ImportError:
        return "none", None


# ----------------------------------------------------------------------------- 2. DeepSea agent


def deepsea_rows(quick: bool, deadline: float) -> list[dict]:
    try:
        from replicate.recode import agents
    except ImportError as err:  # gymnax / xminigrid missing
        return [skipped("deepsea", f"{err}")]
    size = 10 if quick else 22
    spec = agents.RunSpec(budget_episodes=200 if quick else 4000, num_envs=32, num_steps=32, embed_dim=32,
                          memory_size=1024, ppo={"learning_rate": 1e-3, "gamma": 0.99})
    seeds = list(range(2 if quick else 8))
    out = {}
    for method in ("none", "recode"):
        agents.deep_sea_run(size, method, seeds[:1], dataclasses.replace(spec, budget_episodes=20))  # compile
        r = agents.deep_sea_run(size, method, seeds, spec)
        out[method] = r["env_steps"] * len(seeds) / r["wall_s"]
    return [{"part": "deepsea", "case": f"DeepSea-{size}, {len(seeds)} seeds x 32 envs",
             "candidate": f"PPO + RECODE {out['recode']:.0f} env steps/s",
             "baseline": f"PPO, no bonus {out['none']:.0f} env steps/s", "ratio": out["recode"] / out["none"],
             "note": "includes compile of the measured call"}]


# ----------------------------------------------------------------------------- 3. Atari agent


def atari_rows(quick: bool, deadline: float) -> list[dict]:
    try:
        from replicate.recode import atari_agent
    except ImportError as err:
        return [skipped("atari", f"{err}")]
    rows = []
    for method in ("none", "recode"):
        if rows and time.monotonic() > deadline:
            rows.append(skipped("atari", "time budget spent"))
            break
        run = atari_agent.RunConfig(total_frames=4 * 8 * 64 * (2 if quick else 8), num_envs=8, num_steps=64,
                                    memory_size=5000)
        try:
            out = atari_agent.train(method, run, 0)
        except Exception as err:  # emulator or ROM missing on this machine
            rows.append(skipped("atari", f"{type(err).__name__}: {err}"))
            break
        steps = run.ppo_config().total_timesteps
        split = {k: v for k, v in out.items() if k.endswith("_s") and isinstance(v, (int, float))}
        wall = float(out.get("wall_s", float("nan"))) - float(out.get("compile_s", 0.0))
        rows.append({"part": "atari", "case": f"Montezuma, {method}, 8 envs x 64 steps",
                     "candidate": f"{steps / wall:.0f} agent steps/s (with learning)", "baseline": "-",
                     "ratio": "-", "note": "time split: " + ", ".join(f"{k} {v:.1f}" for k, v in split.items())})
    return rows


# ----------------------------------------------------------------------------- 4. PAC


def pac_rows(quick: bool, deadline: float) -> list[dict]:
    import pac_train_step

    from replicate.pac import perceiver, train
    from replicate.pac.losses import PACConfig

    rows = []
    data = pac_train_step.synthetic_data()
    sizes = ["tiny"] if quick else sorted(perceiver.SIZES, key=lambda s: perceiver.SIZES[s]["d_model"])
    dtypes = list(perceiver.COMPUTE_DTYPES)
    batch = 64 if quick else 1024
    pac = PACConfig()
    for size in sizes:
        for dtype in dtypes:
            if rows and time.monotonic() > deadline:
                rows.append(skipped("pac", f"time budget spent before {size}/{dtype}"))
                return rows
            tc = train.TrainConfig(batch_size=batch)
            net = perceiver.make_config(size, obs_dim=24, action_dim=6, num_tasks=2, num_action_bins=21,
                                        num_value_bins=51, compute_dtype=dtype)
            model, state = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
            steps = 10
            fn = train.make_train_fn(model, pac, tc, steps)
            t = time_call(lambda: fn(state, data, jax.random.PRNGKey(1), 0.75, 1.0)[0].params, repeats=3,
                          min_time_s=0.5)["median_s"]
            sps = steps * batch / t
            flops = perceiver.train_flops_per_sample(net, pac, "PAC")
            peak = peak_tflops(dtype)
            mfu = sps * flops / (peak * 1e12) if peak else None
            rows.append({"part": "pac", "case": f"{size} ({perceiver.param_count(state.params):,} params), {dtype}",
                         "candidate": f"{sps:.0f} samples/s", "baseline": f"{flops / 1e6:.1f} MFLOP/sample",
                         "ratio": mfu if mfu is not None else "-",
                         "note": "ratio = MFU (FLOPs: perceiver.train_flops_per_sample, target and sampled passes in)"})
    return rows


# ----------------------------------------------------------------------------- 5. Gemma


def gemma_rows(quick: bool, deadline: float) -> list[dict]:
    try:
        from replicate.glasses import gemma
        model = gemma.load("float32")
    except Exception as err:  # weights package or gguf missing
        return [skipped("gemma", f"{type(err).__name__}: {err}")]
    rows = []
    for n in ([128] if quick else [128, 512, 2048]):
        if rows and time.monotonic() > deadline:
            rows.append(skipped("gemma", "time budget spent"))
            break
        ids = np.random.default_rng(n).integers(10, 1000, n)
        def fwd(i=ids):
            return model.forward(i, attentions=False, all_logits=False).logits

        t = time_call(fwd, repeats=3, min_time_s=0.2)["median_s"]
        rows.append({"part": "gemma", "case": f"{n} tokens, float32", "candidate": f"{t * 1e3:.1f} ms",
                     "baseline": "-", "ratio": "-", "note": f"{n / t:.0f} tokens/s"})
    return rows


PARTS = {"recode": recode_rows, "deepsea": deepsea_rows, "atari": atari_rows, "pac": pac_rows, "gemma": gemma_rows}
SHARE = {"recode": 0.3, "deepsea": 0.2, "atari": 0.15, "pac": 0.25, "gemma": 0.1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU smoke run of the check itself)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget of the whole check")
    ap.add_argument("--parts", nargs="*", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--name", default="gpu_check", help="results file stem under benchmarks/results/")
    args = ap.parse_args(argv)
    start = time.monotonic()
    rows = []
    for part in args.parts:
        t0 = time.monotonic()
        deadline = t0 + SHARE[part] * args.budget_s  # each part always measures its first case
        try:
            rows += PARTS[part](args.quick, deadline)
        except Exception as err:  # one broken part must not hide the others' numbers
            traceback.print_exc()
            rows.append(skipped(part, f"error {type(err).__name__}: {err}"))
        print(f"[gpu_check] {part}: {time.monotonic() - t0:.0f} s", flush=True)
    notes = (f"Device {device_name()}; whole check {time.monotonic() - start:.0f} s"
             f"{' (--quick)' if args.quick else ''}; load {os.getloadavg()[0]:.1f}. Ratios: step / own query, step / "
             "peer k-NN (goal <= 2 on a GPU), RECODE agent / no-bonus agent, PAC MFU against the datasheet peak.")
    write_results(args.name, rows, title="Device check of the full profiles' scale path", notes=notes)
    print(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
