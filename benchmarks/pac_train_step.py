"""PAC training throughput: samples (and input tokens) per second per model size and compute dtype, PAC vs BC.

``python benchmarks/pac_train_step.py [--sizes tiny xs s m] [--dtypes float32 bfloat16] [--batch 64] [--steps 10]
[--peak-tflops X]``

Times one jitted ``lax.scan`` chunk of ``--steps`` updates (``replicate.pac.train.make_train_fn``) on
synthetic data with our dm_control shapes (24 observation dims, 6 action dims, 2 tasks) for PAC
(alpha 0.75, critic on, M sampled actions) and the BC baseline (alpha 1, no critic; the same compiled
step type but BC-only: encoder + policy decoder, no critic or target passes). Reports samples/s, input
tokens/s, model TFLOP/s (each method's training FLOPs per sample, ``perceiver.train_flops_per_sample``:
PAC's target-network and sampled-action critic passes included) and, with ``--peak-tflops`` (the
accelerator's dense peak), MFU. ``--dtypes``: the network's compute dtype (``PerceiverConfig.compute_dtype``; in
bfloat16 the parameters and optimizer state stay float32); the baseline of each row is BC at the same size and dtype,
and ``vs_float32`` is the row's samples/s over the float32 row of the same size and method.
Writes ``benchmarks/results/pac_train_step.{json,md}``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from replicate.benchmarking import time_call, write_results
from replicate.pac import train
from replicate.pac.losses import PACConfig
from replicate.pac.perceiver import COMPUTE_DTYPES, SIZES, make_config, param_count, train_flops_per_sample


def synthetic_data(n: int = 4096, obs: int = 24, act: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    task = rng.integers(0, 2, n).astype(np.int32)
    obs_dim = np.where(task == 0, 5, obs)
    om = np.arange(obs)[None] < obs_dim[:, None]
    am = np.arange(act)[None] < np.where(task == 0, 1, act)[:, None]
    o = rng.normal(size=(n, obs)).astype(np.float32) * om
    return {k: jnp.asarray(v) for k, v in dict(
        obs=o, next_obs=o, obs_mask=om, task=task, action=rng.uniform(-1, 1, (n, act)).astype(np.float32) * am,
        action_mask=am, reward=rng.uniform(0, 1, n).astype(np.float32), discount=np.ones(n, np.float32)).items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", default=["tiny", "xs", "s", "m"], choices=sorted(SIZES))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"], choices=list(COMPUTE_DTYPES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8, help="M: sampled actions per state")
    ap.add_argument("--action-bins", type=int, default=21)
    ap.add_argument("--note", default="", help="appended to the notes (e.g. machine load)")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="accelerator dense peak (bf16/fp32) for MFU; 0: omit")
    args = ap.parse_args(argv)
    data = synthetic_data()
    pac = PACConfig(num_policy_samples=args.samples)
    tc = train.TrainConfig(batch_size=args.batch)
    rows = []
    float32_sps = {}  # (size, method) -> samples/s of the float32 row: the baseline of vs_float32
    for size, dtype in ((s, d) for s in args.sizes for d in args.dtypes):
        net = make_config(size, obs_dim=24, action_dim=6, num_tasks=2, num_action_bins=args.action_bins,
                          num_value_bins=51, compute_dtype=dtype)
        model, state = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
        fns = {"BC (baseline)": train.make_train_fn(model, pac, tc, args.steps, bc_only=True),
               "PAC": train.make_train_fn(model, pac, tc, args.steps)}
        key = jax.random.PRNGKey(1)
        for method, (alpha, cw) in {"BC (baseline)": (1.0, 0.0), "PAC": (0.75, 1.0)}.items():
            f_model = train_flops_per_sample(net, pac, method.split()[0])
            t = time_call(lambda f=fns[method], a=alpha, c=cw: f(state, data, key, a, c)[0].params, repeats=3,
                          warmup=1, min_time_s=0.5)
            per_step = t["median_s"] / args.steps
            sps = args.batch / per_step
            row = {"size": size, "params": param_count(state.params), "dtype": dtype, "method": method,
                   "batch": args.batch, "ms_per_step": 1e3 * per_step, "samples_per_s": sps,
                   "tokens_per_s": sps * net.num_input_tokens(), "model_tflops_per_s": sps * f_model / 1e12}
            if dtype == "float32":
                float32_sps[(size, method)] = sps
            if (size, method) in float32_sps:
                row["vs_float32"] = sps / float32_sps[(size, method)]
            if args.peak_tflops > 0:
                row["mfu"] = row["model_tflops_per_s"] / args.peak_tflops
            rows.append(row)
            print(row, flush=True)
    notes = (f"Compute dtypes {args.dtypes} (bfloat16: matmuls and activations in bf16, parameters, gradients and "
             "optimizer state float32, softmax and LayerNorm statistics float32). "
             f"One jitted lax.scan of {args.steps} updates, batch {args.batch}, M={args.samples} sampled actions, "
             f"{args.action_bins} action bins; synthetic data with our dm_control shapes (obs 24, act 6, 2 tasks). "
             "Model FLOPs = each method's training FLOPs per sample (perceiver.train_flops_per_sample: BC = 3 x "
             "forward of encoder + policy decoder; PAC adds the critic on the data action (x3) and the target "
             "network's forward passes, M sampled-action critic passes at s and s' included). "
             "BC is the baseline: the same network trained by plain BC (encoder + policy decoder only)." + args.note)
    write_results("pac_train_step", rows, title="PAC training throughput per model size (samples/s, tokens/s)",
                  notes=notes)


if __name__ == "__main__":
    main()
