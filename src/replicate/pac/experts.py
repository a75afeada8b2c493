"""Expert-training stage: ``python -m replicate.pac.experts [--profile P] [--tasks T ...]``.

Trains one SAC agent per task (:func:`replicate.pac.datasets.train_expert`) with the settings of
``params.yaml`` -> ``notebooks.30_pac_datasets.<profile>`` (``TASKS``, ``EXPERT_STEPS``, ``TIERS``,
``SNAPSHOT_FRACTIONS``, ``ACTION_REPEAT``, ``SAC_HIDDEN``, ``SEED``) and writes the actor snapshots, one per quality tier, to
``data/pac/experts/<profile>/<task>/<tier>.npz`` plus ``summary.json`` (small; committed for the
cpu/full profiles so that regenerating a dataset needs no expert training). DVC stage ``pac_experts``.
"""

from __future__ import annotations

import argparse
import sys
import time

from replicate.params import notebook_params
from replicate.rl import sac


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="smoke | cpu | full (default: params.yaml's profile)")
    ap.add_argument("--tasks", nargs="*", default=None, help="subset of the profile's TASKS")
    args = ap.parse_args(argv)
    p = notebook_params("30_pac_datasets", args.profile)
    from replicate.pac.datasets import train_expert

    tasks = args.tasks or p["TASKS"]
    unknown = sorted(set(tasks) - set(p["TASKS"]))
    if unknown:
        ap.error(f"tasks {unknown} are not in notebooks.30_pac_datasets.{p['PROFILE']}.TASKS={p['TASKS']}")
    cfg = sac.SACConfig(hidden=p["SAC_HIDDEN"], batch_size=128, warmup_steps=min(1000, p["EXPERT_STEPS"] // 4))
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        s = train_expert(task, p["EXPERT_STEPS"], p["TIERS"], seed=p["SEED"] + i, action_repeat=p["ACTION_REPEAT"],
                         cfg=cfg, profile=p["PROFILE"], fractions=p["SNAPSHOT_FRACTIONS"])
        tiers = ", ".join(f"{k}={v['eval_return_mean']:.0f}" for k, v in s["tiers"].items())
        print(f"{task}: {tiers}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
