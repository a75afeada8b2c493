"""AP vs CASM representations on the same data (notebook 12): linear probes and RECODE's counts on them.

Data (:func:`grid_walks`): uniform random walks from the corner cell of a ``size x size`` grid with 4 actions (up, down,
left, right; a move into a wall leaves the agent in place). An observation is the cell's fixed
random code (``code_dim`` Gaussian features, a different random vector per cell) concatenated with
``noise_dims`` channels of fresh uniform noise at every step: the "noisy TV" of RECODE's Fig. 5, an
uncontrollable distractor that an embedding trained to predict actions should learn to ignore.

Both learners see the same trajectories with the same batch of transitions per Adam step (AP: ``batch``
random transitions; CASM: ``batch // seq_len`` random windows of ``seq_len`` steps, i.e. the same number of
transitions, each with N = 4 masks); :func:`train_until_plateau` trains each until its own loss has
plateaued (or a step cap), so neither is judged half-trained.

* :func:`linear_probe`: ridge regression from standardised embeddings to the one-hot cell, accuracy
  of the arg-max on held-out walks (a linear read-out of the true agent position).
* :func:`recode_counts`: RECODE's memory run over the stream of embeddings (batches of ``actors``),
  then its pseudo-count ``N`` queried at every visited cell's mean embedding and compared (Spearman)
  with the true visit counts: how well the clusters the embedding induces track the real state counts.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from replicate.recode import memory, representations

MOVES = np.array([[0, 1], [0, -1], [-1, 0], [1, 0]])


def grid_walks(size: int, n_traj: int, length: int, code_dim: int, noise_dims: int, noise_scale: float, seed: int,
               walk_seed: int = 0):
    """Random walks: obs (N, L, code_dim + noise_dims) float32, actions (N, L) int32, cells (N, L) int32.

    ``seed`` fixes the cells' codes (the environment), ``walk_seed`` the walks and the noise (the data
    set: use another one for held-out data). ``actions[:, t]`` moves ``cells[:, t]`` to ``cells[:, t+1]``
    (the last action is a dummy)."""
    codes = np.random.default_rng(seed).normal(size=(size * size, code_dim)).astype(np.float32)
    rng = np.random.default_rng([seed, walk_seed + 1])
    pos = np.zeros((n_traj, length, 2), np.int64)
    # every walk starts in the corner cell (0, 0), like an episode's start state: visit counts then fall
    # with the distance from the corner over orders of magnitude, which is what a count must rank
    pos[:, 0] = 0
    actions = rng.integers(0, 4, (n_traj, length)).astype(np.int32)
    for t in range(1, length):
        pos[:, t] = np.clip(pos[:, t - 1] + MOVES[actions[:, t - 1]], 0, size - 1)
    cells = (pos[..., 0] * size + pos[..., 1]).astype(np.int32)
    noise = noise_scale * rng.uniform(-1, 1, (n_traj, length, noise_dims)).astype(np.float32)
    return np.concatenate([codes[cells], noise], -1), actions, cells


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def train_ap(cfg: representations.APConfig, obs, actions, key, steps: int, batch: int, state=None):
    """AP (Eq. 4) for ``steps`` Adam steps on random transitions, from ``state`` (``None``: a fresh
    ``init_ap(cfg, key)``); returns (state, {"loss", "accuracy"} per step)."""
    n, L = actions.shape
    st = representations.init_ap(cfg, key) if state is None else state

    def body(st, k):
        ki, kt = jax.random.split(k)
        i = jax.random.randint(ki, (batch,), 0, n)
        t = jax.random.randint(kt, (batch,), 0, L - 1)
        st, info = representations.ap_train_step(cfg, st, obs[i, t], actions[i, t], obs[i, t + 1])
        return st, {"loss": info["loss"], "accuracy": info["accuracy"]}

    return jax.lax.scan(body, st, jax.random.split(jax.random.fold_in(key, 1), steps))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def train_casm(cfg: representations.CASMConfig, obs, actions, key, steps: int, batch: int, state=None):
    """CASM for ``steps`` Adam steps on random windows (``batch // seq_len`` of them), from ``state``
    (``None``: a fresh ``init_casm(cfg, key)``); returns (state, {"loss", "accuracy"} per step)."""
    n, L = actions.shape
    w = max(1, batch // cfg.seq_len)
    st = representations.init_casm(cfg, key) if state is None else state
    offs = jnp.arange(cfg.seq_len)

    def body(st, k):
        ki, kt, km = jax.random.split(k, 3)
        i = jax.random.randint(ki, (w,), 0, n)
        t0 = jax.random.randint(kt, (w,), 0, L - cfg.seq_len + 1)
        idx = t0[:, None] + offs[None]
        st, info = representations.casm_train_step(cfg, st, obs[i[:, None], idx], actions[i[:, None], idx], km)
        return st, {"loss": info["loss"], "accuracy": info["accuracy"]}

    return jax.lax.scan(body, st, jax.random.split(jax.random.fold_in(key, 1), steps))


def train_until_plateau(train, cfg, obs, actions, key, batch: int, *, chunk: int, max_steps: int,
                        frac: float = 0.2, tol: float = 0.01, min_chunks: int = 2) -> tuple[object, dict]:
    """Train with ``train`` (:func:`train_ap` or :func:`train_casm`) in chunks of ``chunk`` Adam steps until the
    loss curve has plateaued (:func:`replicate.recode.analysis.plateaued` with ``frac``, ``tol``; checked from
    ``min_chunks`` chunks on, so that a loss that has not started to fall yet does not count as flat) or
    ``max_steps`` steps were taken. Each chunk draws its batches with ``fold_in(key, chunk index)``.

    Returns ``(state, curves)``: NumPy ``loss`` and ``accuracy`` per step, ``plateaued`` (bool) and ``steps``."""
    from replicate.recode import analysis

    if chunk < 1 or max_steps < chunk:
        raise ValueError(f"need 1 <= chunk <= max_steps, got chunk={chunk}, max_steps={max_steps}")
    state, losses, accs, i = None, [], [], 0
    while True:
        state, info = train(cfg, obs, actions, jax.random.fold_in(key, i) if i else key, chunk, batch, state)
        losses.append(np.asarray(info["loss"]))
        accs.append(np.asarray(info["accuracy"]))
        i += 1
        loss = np.concatenate(losses)
        done = i >= min_chunks and analysis.plateaued(loss, frac, tol)
        if done or len(loss) + chunk > max_steps:
            return state, {"loss": loss, "accuracy": np.concatenate(accs), "plateaued": bool(done),
                           "steps": int(len(loss))}


def linear_probe(x_train, y_train, x_test, y_test, n_classes: int, l2: float = 1e-2) -> float:
    """Held-out accuracy of a ridge-regression read-out of the class (one-hot targets, arg-max)."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    y = np.eye(n_classes)[np.asarray(y_train)]
    w = np.linalg.solve(a.T @ a + l2 * len(a) * np.eye(a.shape[1]), a.T @ y)
    return float(np.mean(np.argmax(b @ w, 1) == np.asarray(y_test)))


def recode_counts(cfg: memory.RecodeConfig, emb, cells, n_cells: int, actors: int, key) -> dict:
    """Run RECODE over embeddings (N, L, d) as a stream of (L * N / actors) calls; Spearman rho of N vs truth."""
    from scipy.stats import spearmanr

    d = emb.shape[-1]
    e = np.asarray(emb, np.float32).reshape(-1, d)
    c = np.asarray(cells).reshape(-1)
    calls = len(e) // actors
    stream = jnp.asarray(e[: calls * actors].reshape(calls, actors, d))
    st, _ = memory.checked_run_stream(cfg, memory.init(cfg, d), stream, key)
    c = c[: calls * actors]
    truth = np.bincount(c, minlength=n_cells)
    visited = np.nonzero(truth)[0]
    means = np.stack([e[: calls * actors][c == v].mean(0) for v in visited])
    _, count = memory.checked_reward(cfg, st, means)
    rho = spearmanr(np.asarray(count), truth[visited]).statistic
    return {"rho": float(rho), "atoms": int(np.asarray(st.filled).sum()), "state": st}
