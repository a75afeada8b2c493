"""RECODE: the clustering-based online density estimator (Saade et al. 2023, arXiv 2305.01521).

The memory holds ``M`` atoms (cluster centres) ``f_l`` with discounted counts ``c_l``. For every
embedding ``e`` the paper's Algorithm 1 ("RECODE", ICLR-2023 version; that the arXiv/final version's update is
identical is *unverified*: its appendix could not be read here) does, in this order:

* l.1  pseudo-count  ``N(e) = sum_l (1 + c_l) K(f_l, e)`` with the kernel of Eq. (3)
  ``K(f, e) = eps / (eps + ||e - f||^2 / d_m^2) * 1{||e - f||^2 < d_m^2}`` summed over *all*
  atoms inside the ``d_m^2`` ball (Sec. 3: not only the k nearest, so that inserting a
  unit-count atom next to ``e`` can never lower its count);
* l.2  intrinsic reward ``r = 1 / (sqrt(N) + c)`` (Eq. 2), computed *before* the update;
* l.3-4 ``d_m^2 <- (1 - tau) d_m^2 + tau / k * sum_{f in N_k(e)} ||e - f||^2``;
* l.5  discount every count ``c_l <- gamma c_l``;
* l.6-8 nearest atom ``i``; ``u ~ U[0, 1]``; if ``||f_i - e||^2 > kappa d_m^2`` and ``u < eta``:
* l.10-13 sample an atom ``j`` with ``P(j) ∝ 1 / c_j^2``, hand ``c_j`` to ``j``'s nearest atom
  ``n`` (``c_n <- c_n + c_j``) and put ``e`` in slot ``j`` with count 1;
* l.15-16 otherwise merge ``e`` into ``i``: ``f_i <- c_i/(c_i+1) f_i + e/(c_i+1)``, ``c_i <- c_i + 1``.

The reward is normalised by a running estimate of its standard deviation by the *agent*
(Sec. 3, "as in Burda et al. 2019"); :func:`replicate.rl.ppo.normalise_intrinsic` does that; the
memory returns the raw ``r`` and ``N``.

Choices where the paper is silent (each one is a field of :class:`RecodeConfig` or documented
here, and the NumPy transcription in :mod:`replicate.recode.reference` makes the same ones):

* **Empty memory.** Counts start at 0 (Sec. 3). A slot that has never held an atom is *empty*:
  it is not an atom (it takes part in no distance, kernel or k-NN computation). With
  ``P(j) ∝ 1/c_j^2`` a zero count has infinite weight, so empty slots are always evicted first
  (lowest index first), with no count to hand over. An embedding that finds no atom at all
  (empty memory) is inserted unconditionally: there is nothing to merge it into.
* **Filling the memory** (``free_fill``): while empty slots remain, the coin flip ``u < eta``
  is skipped (only the distance test applies), since such an insertion evicts nothing.
* **Count floor.** ``1/c^2`` uses ``max(c, count_floor)``: atoms whose discounted count fell below
  the floor (not visited for ``log(floor)/log(gamma)`` steps) are equally likely to go.
* **Initial d_m^2.** The first embedding that has at least one atom sets ``d_m^2`` to its k-NN
  mean instead of averaging it with an arbitrary initial value; Alg. 1 l.4 from then on. With
  fewer than ``k`` atoms the mean runs over the atoms there are.
* **Gamma per embedding** (``discount_per="embedding"``, Alg. 1 read literally: one discount per
  call of the algorithm, i.e. per embedding). ``"call"`` discounts once per batch instead.
* **Simultaneous updates in a batch** (the paper's memory is shared by all actors but the
  algorithm is written for one embedding). A batch of ``B`` embeddings is processed as ``B``
  consecutive runs of Algorithm 1 in batch order, except that what needs a pass over the whole
  memory is read from the memory *as it was before the batch*: (i) each embedding's distances to
  the pre-batch atoms (not their moved centres), hence its reward and pseudo-count (rewards are
  simultaneous: every actor queries the same memory) and its k-NN candidates (the k nearest
  pre-batch atoms, minus those evicted earlier in the batch, plus the atoms created earlier in
  the batch); (ii) the eviction weights ``1/c^2`` (evictees are drawn without
  replacement from the pre-batch counts by Gumbel-top-B, so no two insertions of a batch take the
  same slot); (iii) the neighbours of evicted atoms. Everything else is sequential and exact: the
  ``d_m^2`` recursion, the per-embedding discount, merges of several embeddings into one atom
  (running means with the exact discounted weights), atoms created earlier in the same batch
  (a later embedding near one of them merges into it instead of creating a duplicate), atoms
  evicted earlier in the batch (no longer merge targets), and the count hand-over. With ``B = 1``
  the result equals the sequential reference exactly (tested); for larger batches it agrees
  statistically (tested on a long non-stationary stream).
* **Parallel update** (``RecodeConfig.update = "parallel"``; the default ``"sequential"`` is the
  update above). All ``B`` embeddings of a call update the memory *simultaneously*: every quantity is
  computed from the memory as it was before the batch, so the work is a few matrix products, sorts
  and segment sums whose sequential depth does not grow with ``B`` (one associative scan, depth
  ``log B``). Precisely, for embeddings ``e_0 .. e_{B-1}``:

  1. rewards, pseudo-counts and the k nearest atoms: from the pre-batch memory (as above);
  2. ``d_m^2`` follows Alg. 1 l.4 in batch order, ``d_b = (1 - tau) d_{b-1} + tau m_b``, where ``m_b``
     is ``e_b``'s mean squared distance to its k nearest *pre-batch* atoms (atoms created in the batch
     do not enter it); all ``d_b`` come from one associative scan. The first embedding that has a
     neighbour sets ``d_m^2`` to its mean, as above. On an empty memory (the first call only) the
     earlier embeddings of the batch play the part of the atoms: ``m_b`` is ``e_b``'s mean squared
     distance to its k nearest among ``e_0 .. e_{b-1}`` (in the sequential update most of them are
     atoms by then);
  3. insertion candidates (l.6-8): ``e_b`` is a candidate iff it has no pre-batch atom, or its
     nearest pre-batch atom is farther than ``kappa d_b`` and ``u_b < eta`` (``free_fill``: the coin
     is skipped for ``e_b`` when fewer embeddings before it passed the distance test than there are
     empty slots, so exactly the insertions that fill empty slots are free). On an empty memory
     only ``e_0`` has no atom; every other embedding passes the distance test here and meets its
     real test, against the earlier candidates, in step 4;
  4. near-duplicates (one B x B pass): a candidate within ``kappa d_b`` of an *earlier candidate* of
     the batch is not inserted (it merges, step 6). The pass is not iterated: a candidate dropped
     this way still blocks later candidates near it;
  5. the remaining candidates, in batch order, are inserted into the slots of the Gumbel-top-R
     ranking of the pre-batch eviction weights (as above; ``max_insertions`` caps R, and candidates
     beyond the cap merge and are reported in ``dropped_insertions``). Atoms evicted by the batch
     are gone for the whole batch: no embedding merges into one and no count is handed to one;
  6. every other embedding merges into its nearest atom *after* the batch's evictions and
     insertions: the nearest surviving atom among its k nearest pre-batch atoms, or the nearest
     atom created by the batch (earlier or later in batch order) if that is nearer; with neither
     (every one of its k neighbours evicted and nothing inserted) it is dropped (slot -1);
  7. merges are segment sums with the exact discounted running-mean weights: with per-embedding
     discount a pre-batch count decays by ``gamma^B`` and ``e_b`` enters with weight
     ``gamma^(B-1-b)`` (per-call discount: ``gamma`` and 1), so atom ``i`` ends at
     ``c_i = gamma^B c_i0 + sum_{b -> i} gamma^(B-1-b)`` and
     ``f_i = (gamma^B c_i0 f_i0 + sum_{b -> i} gamma^(B-1-b) e_b) / c_i`` - exactly what B sequential
     merges of these embeddings into the unmoved atom give. A new atom is the same weighted mean
     of the embedding that created it and those merged into it (``c_i0 = 0``);
  8. count hand-over (l.11-12), after the merges: each evicted atom's discounted count
     ``gamma^B c_j0`` is added (segment sum) to its nearest atom after the batch - the nearest
     surviving one among its ``redistribute_neighbours`` nearest pre-batch atoms, or a new atom of
     the batch in another slot if that is nearer - whose position does not change.

  So the total discounted count mass is conserved exactly as in the sequential update, the number
  of atoms never exceeds the capacity and counts stay >= 0 (tested). With ``B = 1`` the decisions,
  slots and ``d_m^2`` equal the sequential update's, and atoms and counts agree to float32 rounding
  (the merged count is computed as ``gamma c + 1`` rather than ``(c + 1/gamma) gamma``; tested). For
  larger batches it differs from the sequential update only where embeddings of the same batch
  interact (steps 2, 4-6, 8); it tracks counts as well (tested on a long non-stationary stream and
  on notebook 10's stream).

Hyper-parameter defaults: ``memory_size = 5e4`` and ``gamma = 0.999`` are the paper's Atari values
(Sec. 5; Fig. 4 caption); DM-HARD-8 uses ``memory_size = 2e5``. RECODE's own ``k``, ``kappa``, ``tau``,
``eta``, ``epsilon`` and ``c`` are in the final version's appendix, which could not be read here: they
are unknown, and every default below is **our choice** (``k = 10``, ``epsilon = 1e-3``, ``c = 1e-3``,
``kappa = 0.5``, ``tau = 1e-3``, ``eta = 0.1``). For comparison only, NGU's episodic memory (Badia et al.
2020, App. F) uses k = 10, epsilon = 1e-4 and c = 1e-3 (:class:`replicate.recode.baselines.EpisodicConfig`);
those are NGU's values, not RECODE's. With ``kappa >= 1`` an embedding equidistant
from its k nearest atoms (e.g. a new, isolated state) hardly ever passes the test, since d_m^2 is
the mean over those same distances; ``kappa = 0.5`` creates an atom for it and merges noise.
Every one is a parameter; the notebook ablates ``eta``, ``gamma``, the memory size and the eviction rule.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from replicate.params import ParameterError

EVICTION_RULES = ("inverse_square", "inverse", "smallest", "uniform")
UPDATE_RULES = ("sequential", "parallel")  # RecodeConfig.update: how a batch updates the memory (see step)
_EMPTY_SCORE = 1.0e7  # score of empty slots in the eviction ranking (exact integers in float32)


@dataclasses.dataclass(frozen=True)
class RecodeConfig:
    """Every hyper-parameter of RECODE's memory (Algorithm 1, Eqs. 2-3).

    memory_size: number of atoms |M| (Sec. 5: 5e4 Atari, 2e5 DM-HARD-8).
    k: neighbours in the d_m^2 update (Alg. 1 l.3-4). Default 10: our choice (the paper's value is unknown here).
    kappa: relative tolerance of the insertion test ||f_i - e||^2 > kappa d_m^2 (Alg. 1 l.8). Default 0.5: our choice.
    tau: decay rate of the d_m^2 running mean (Alg. 1 l.4). Default 1e-3: our choice.
    gamma: count discount (Alg. 1 l.5; 0.999 for Atari, Fig. 4).
    eta: insertion probability (Alg. 1 l.7-8). Default 0.1: our choice.
    epsilon: kernel constant of Eq. (3). Default 1e-3: our choice (unknown in the paper; NGU's is 1e-4).
    c: reward constant of Eq. (2). Default 1e-3: our choice (unknown in the paper; NGU's is 1e-3).
    count_floor: floor on counts in the eviction weights 1/c^2 (our choice; paper silent).
    eviction: 'inverse_square' (paper, 1/c^2), or the ablations 'inverse' (1/c), 'smallest'
        (deterministic smallest count) and 'uniform'.
    discount_per: 'embedding' (Alg. 1 literally) or 'call' (once per batch).
    redistribute_neighbours: how many pre-batch neighbours of each evictee are kept as candidates
        for its count hand-over (Alg. 1 l.11) inside a batch; >= 1. Only matters when several
        neighbours of an evictee are evicted in the same batch.
    max_insertions: cap on insertions per call (None: the batch size, i.e. no cap). Insertions
        over the cap merge instead (reported in the step info); a speed knob, off by default.
    free_fill: while the memory has empty slots, an embedding that passes the distance test is
        inserted without the coin flip ``u < eta`` (nothing is evicted, so there is nothing to
        throttle). Our choice for the start-up phase, which the paper does not describe; without
        it a mostly empty memory merges far-apart embeddings into its few atoms, and because d_m^2
        then averages over those far atoms it stays large and the memory can stay nearly empty.
    update: how a batch updates the memory. 'sequential' (default): B consecutive runs of Alg. 1
        (``lax.scan``; B = 1 equals the NumPy reference). 'parallel': all B embeddings at once, with
        a sequential depth independent of B (semantics in the module docstring, "Parallel update").
    """

    memory_size: int = 50_000
    k: int = 10
    kappa: float = 0.5
    tau: float = 1e-3
    gamma: float = 0.999
    eta: float = 0.1
    epsilon: float = 1e-3
    c: float = 1e-3
    count_floor: float = 1e-6
    eviction: str = "inverse_square"
    discount_per: str = "embedding"
    redistribute_neighbours: int = 4
    max_insertions: int | None = None
    free_fill: bool = True
    update: str = "sequential"

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ParameterError(f"RecodeConfig: {msg}")

        for name in ("memory_size", "k", "redistribute_neighbours"):
            v = getattr(self, name)
            need(isinstance(v, (int, np.integer)) and not isinstance(v, bool), f"{name}={v!r} must be an int")
        need(self.k >= 1, f"k={self.k} must be >= 1 (number of nearest atoms in the d_m^2 update)")
        need(self.memory_size >= self.k, f"memory_size={self.memory_size} is below k={self.k}; use a capacity >= k")
        need(self.memory_size <= 4_000_000,
             f"memory_size={self.memory_size} is too large for the eviction ranking (max 4e6)")
        need(self.redistribute_neighbours >= 1, f"redistribute_neighbours={self.redistribute_neighbours} must be >= 1")
        need(self.kappa > 0, f"kappa={self.kappa} must be > 0")
        need(0 < self.tau <= 1, f"tau={self.tau} must be in (0, 1]")
        need(0 < self.gamma <= 1, f"gamma={self.gamma} must be in (0, 1]")
        need(0 <= self.eta <= 1, f"eta={self.eta} must be in [0, 1]")
        need(self.epsilon > 0, f"epsilon={self.epsilon} must be > 0")
        need(self.c > 0, f"c={self.c} must be > 0")
        need(self.count_floor > 0, f"count_floor={self.count_floor} must be > 0")
        need(self.eviction in EVICTION_RULES, f"eviction={self.eviction!r}; choose one of {EVICTION_RULES}")
        need(self.discount_per in ("embedding", "call"),
             f"discount_per={self.discount_per!r}; choose 'embedding' or 'call'")
        need(self.update in UPDATE_RULES, f"update={self.update!r}; choose one of {UPDATE_RULES}")
        if self.max_insertions is not None:
            need(self.max_insertions >= 1, f"max_insertions={self.max_insertions} must be >= 1 or None")


class RecodeState(NamedTuple):
    """The memory: atoms (M, d), counts (M,), which slots hold an atom, d_m^2 and bookkeeping."""

    atoms: jax.Array  # (M, d) float32 cluster centres f_l
    counts: jax.Array  # (M,) float32 discounted counts c_l
    filled: jax.Array  # (M,) bool: slot holds an atom
    born: jax.Array  # (M,) int32: embedding index at which the atom was inserted (-1: empty)
    dm2: jax.Array  # () float32: d_m^2
    dm2_ready: jax.Array  # () bool: d_m^2 has been set
    n_seen: jax.Array  # () int32: embeddings processed


class StepOutput(NamedTuple):
    reward: jax.Array  # (B,) intrinsic reward r (Eq. 2), before the update
    count: jax.Array  # (B,) pseudo-count N (Alg. 1 l.1), before the update
    inserted: jax.Array  # (B,) bool: created a new atom
    slot: jax.Array  # (B,) int32: slot inserted into or merged into (-1: dropped)
    nearest_d2: jax.Array  # (B,) squared distance to the nearest atom at decision time (inf: none)
    dropped_insertions: jax.Array  # () int32: insertions turned into merges by max_insertions


class Noise(NamedTuple):
    """The random draws of one call: ``u`` (B,) for the insertion test (Alg. 1 l.7) and Gumbel
    noise ``g`` (M,) that turns the eviction weights into a sample (Gumbel-max / Gumbel-top-B)."""

    u: jax.Array
    g: jax.Array


def init(cfg: RecodeConfig, dim: int) -> RecodeState:
    """An empty memory for embeddings of size ``dim``."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive int (the embedding size)")
    m = cfg.memory_size
    return RecodeState(
        atoms=jnp.zeros((m, int(dim)), jnp.float32),
        counts=jnp.zeros((m,), jnp.float32),
        filled=jnp.zeros((m,), bool),
        born=jnp.full((m,), -1, jnp.int32),
        dm2=jnp.zeros((), jnp.float32),
        dm2_ready=jnp.zeros((), bool),
        n_seen=jnp.zeros((), jnp.int32),
    )


def draw_noise(cfg: RecodeConfig, key: jax.Array, batch: int) -> Noise:
    """The random numbers one call of :func:`step` consumes (also fed to the NumPy reference)."""
    ku, kg = jax.random.split(key)
    return Noise(jax.random.uniform(ku, (batch,), jnp.float32), jax.random.gumbel(kg, (cfg.memory_size,), jnp.float32))


# ----------------------------------------------------------------------------------------------
# Boundary checks (outside jit): clear errors instead of NaNs or shape errors inside a trace.


def check_embeddings(state: RecodeState, embeddings, *, name: str = "embeddings") -> jax.Array:
    """Validate a (B, d) batch of embeddings against the memory; return it as float32."""
    return check_batch(embeddings, state.atoms.shape[1], name=name)


def check_batch(embeddings, dim: int, *, name: str = "embeddings") -> jax.Array:
    """Validate a (B, dim) batch of finite floating-point vectors; return it as float32 (outside jit)."""
    dtype = getattr(embeddings, "dtype", None)
    if dtype is None:
        embeddings = np.asarray(embeddings)
        dtype = embeddings.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} have dtype {dtype}; RECODE needs floating-point embeddings (cast with .astype(np.float32))")
    shape = tuple(embeddings.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{name} have shape {shape}; expected (batch, {dim}) - add a batch axis for a single embedding")
    if shape[1] != dim:
        raise ValueError(f"{name} have size {shape[1]} but the memory holds embeddings of size {dim}")
    if shape[0] < 1:
        raise ValueError(f"{name} are an empty batch; give at least one embedding")
    arr = jnp.asarray(embeddings, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(arr))):
        bad = int(jnp.sum(~jnp.all(jnp.isfinite(arr), axis=1)))
        raise ValueError(
            f"{name}: {bad} of {shape[0]} rows contain NaN or inf; check the embedding network or its inputs")
    return arr


def check_key(key) -> None:
    """Raise a clear error unless ``key`` is a JAX PRNG key (legacy (2,) uint32 or typed)."""
    if not (hasattr(key, "shape") and (key.shape == (2,) or jnp.issubdtype(key.dtype, jax.dtypes.prng_key))):
        raise ValueError(
            f"key must be a JAX PRNG key (replicate.rng.key(seed)), "
            f"got {type(key).__name__} {getattr(key, 'shape', '')}")


# ----------------------------------------------------------------------------------------------
# Core (pure, jit-able)


def sqdist(x: jax.Array, y: jax.Array) -> jax.Array:
    """Squared Euclidean distances (n, m) via the Gram expansion, clamped at 0."""
    xx = jnp.sum(x * x, axis=1, keepdims=True)
    yy = jnp.sum(y * y, axis=1)[None, :]
    d = xx - 2.0 * (x @ y.T) + yy
    return jnp.maximum(d, 0.0)


def _block_size(m: int, block: int) -> int:
    """A block size near ``block`` that divides ``m`` (no padding copy), else ``block``."""
    for cand in range(block, block // 2, -1):
        if m % cand == 0:
            return cand
    return block


def _block_candidates(d2: jax.Array, n_blocks: int, block: int):
    """Split the columns of ``d2`` into blocks, keep the ``n_blocks`` blocks with the smallest minima.

    Block ``b`` holds the columns ``b, b + nb, b + 2 nb, ...`` (strided, so the per-block minimum
    is an element-wise minimum over contiguous rows: fast on CPU). Returns the candidate values
    (n, n_blocks * block) and their column indices.
    """
    n, m = d2.shape
    nb = -(-m // block)
    pad = nb * block - m
    d = jnp.pad(d2, ((0, 0), (0, pad)), constant_values=jnp.inf) if pad else d2
    dr = d.reshape(n, block, nb)  # column index = s * nb + b
    _, bi = jax.lax.top_k(-jnp.min(dr, axis=1), n_blocks)
    cand = jnp.take_along_axis(dr, bi[:, None, :], axis=2).reshape(n, block * n_blocks)
    idx = (jnp.arange(block)[None, :, None] * nb + bi[:, None, :]).reshape(n, block * n_blocks)
    return cand, idx


# The k-NN scan: distances are computed a cache-sized chunk of atoms at a time (``lax.map``) and
# reduced at once to per-block minima (and, for the pseudo-count, to the kernel sum), so the (n, M)
# distance matrix is never stored; a second, small pass recomputes the distances to the atoms of the
# best blocks only. Sizes are our choice, measured on a 2-core CPU (benchmarks/recode_memory.py).
_SCAN_BLOCK = 20  # atoms per block (a divisor of M near it is used when there is one)
_SCAN_CHUNK = 1 << 19  # distances per scan iteration (rows x atoms): 2 MiB of float32


def _scan_pays(m: int, n_near: int, block: int = _SCAN_BLOCK) -> bool:
    """Whether the blocked scan serves ``n_near`` neighbours among ``m`` atoms (at least 4 blocks per neighbour);
    smaller memories take one dense distance matrix."""
    return -(-m // _block_size(m, block)) >= 4 * n_near


def _filled_sqnorms(state: "RecodeState") -> jax.Array:
    """The atoms' squared norms, +inf at empty slots (so an empty slot is never near anything)."""
    return jnp.where(state.filled, jnp.sum(state.atoms * state.atoms, axis=1), jnp.inf)


def _scan_layout(n: int, m: int, block: int) -> tuple[int, int, int]:
    """(block, blocks per chunk, chunks) of the scan of ``n`` rows against ``m`` atoms. The chunk holds
    about ``_SCAN_CHUNK / n`` atoms; a chunk size dividing the number of blocks is preferred (no padding)."""
    block = _block_size(m, block)
    nb = -(-m // block)
    per = min(nb, max(1, _SCAN_CHUNK // (n * block)))
    per = next((c for c in range(per, per // 2, -1) if nb % c == 0), per)
    return block, per, -(-nb // per)


def _scan_nearest(x: jax.Array, atoms: jax.Array, yy: jax.Array, n_near: int, block: int,
                  counts: jax.Array | None = None, kernel=None):
    """The ``n_near`` nearest atoms of every row of ``x``, exactly, in one blocked pass over the memory.

    ``yy``: the atoms' squared norms, +inf at empty slots (they never count as near). Pass 1 (``lax.map``
    over chunks of atoms): squared distances by the Gram expansion, reduced to the minimum of every block
    of ``block`` consecutive atoms, and to ``kernel(d2_chunk, counts_chunk) -> (n,)`` summed over all
    chunks when ``kernel`` is given. The ``n_near`` nearest atoms lie in the ``n_near`` blocks with the
    smallest minima (a block holding one of them has its minimum at or below the ``n_near``-th smallest
    distance, any other block at or above it), so pass 2 recomputes the distances to those blocks' atoms
    only and takes the smallest. Returns ``(d2 ascending (n, n_near), slots (n, n_near) int32, kernel sum
    (n,) or None)``; distances are clamped at 0, +inf where fewer than ``n_near`` atoms are filled.
    """
    n, d = x.shape
    m = atoms.shape[0]
    block, per, n_chunks = _scan_layout(n, m, block)
    chunk = per * block
    pad = n_chunks * chunk - m
    if pad:
        atoms = jnp.pad(atoms, ((0, pad), (0, 0)))
        yy = jnp.pad(yy, (0, pad), constant_values=jnp.inf)
    w = jnp.zeros(m + pad, jnp.float32) if counts is None else jnp.pad(counts, (0, pad))
    xx = jnp.sum(x * x, axis=1)
    x2 = -2.0 * x

    def chunk_pass(xs):
        a, y, c = xs
        d2 = x2 @ a.T + xx[:, None] + y[None, :]  # (n, chunk); may dip below 0 by rounding
        mins = jnp.min(d2.reshape(n, per, block), axis=2)
        ksum = kernel(jnp.maximum(d2, 0.0), c) if kernel is not None else jnp.zeros(n, jnp.float32)
        return mins, ksum

    mins, ksums = jax.lax.map(chunk_pass, (atoms.reshape(n_chunks, chunk, d), yy.reshape(n_chunks, chunk),
                                           w.reshape(n_chunks, chunk)))
    mins = jnp.moveaxis(mins, 0, 1).reshape(n, n_chunks * per)
    _, best = jax.lax.top_k(-mins, n_near)  # (n, n_near) block ids
    idx = (best[:, :, None] * block + jnp.arange(block)[None, None, :]).reshape(n, n_near * block)
    d2 = xx[:, None] + yy[idx] + jnp.einsum("nd,nmd->nm", x2, atoms[idx])
    neg, ci = jax.lax.top_k(-d2, n_near)
    slots = jnp.minimum(jnp.take_along_axis(idx, ci, axis=1), m - 1).astype(jnp.int32)  # padding only at +inf
    return jnp.maximum(-neg, 0.0), slots, (jnp.sum(ksums, axis=0) if kernel is not None else None)


def smallest_k(d2: jax.Array, k: int, block: int = 128) -> tuple[jax.Array, jax.Array]:
    """The k smallest entries of each row of ``d2`` (values ascending, indices), exactly.

    ``lax.top_k`` over a (256, 5e4) matrix is slow on CPU, so for wide rows we first take the
    minimum of each block of columns, keep the k blocks with the smallest minima (they contain the
    k smallest entries: a block holding one of them has its minimum at or below the k-th smallest
    value, every other block at or above it) and run ``top_k`` on those k blocks only.
    """
    n, m = d2.shape
    k = min(k, m)
    block = _block_size(m, block)
    nb = -(-m // block)
    if m <= 8 * block or nb <= k:
        neg, idx = jax.lax.top_k(-d2, k)
        return -neg, idx.astype(jnp.int32)
    cand, cidx = _block_candidates(d2, k, block)
    neg, ci = jax.lax.top_k(-cand, k)
    return -neg, jnp.take_along_axis(cidx, ci, axis=1).astype(jnp.int32)


def _kernel_count(cfg: RecodeConfig, d2: jax.Array, counts: jax.Array, dm2: jax.Array) -> jax.Array:
    """N = sum_l (1 + c_l) K(f_l, e) with Eq. (3); d2 is (B, M) with inf at empty slots."""
    safe = jnp.where(dm2 > 0, dm2, 1.0)
    inball = d2 < dm2  # Eq. (3) indicator; false everywhere while d_m^2 = 0
    kern = jnp.where(inball, cfg.epsilon / (cfg.epsilon + jnp.where(inball, d2, 0.0) / safe), 0.0)
    return jnp.sum(kern * (1.0 + counts)[None, :], axis=1)  # a fused reduction, no (B, M) temporary


def _reward(cfg: RecodeConfig, count: jax.Array) -> jax.Array:
    return 1.0 / (jnp.sqrt(count) + cfg.c)  # Eq. (2)


def _eviction_scores(cfg: RecodeConfig, counts: jax.Array, filled: jax.Array, g: jax.Array) -> jax.Array:
    """Scores whose descending order is a sample without replacement from P(j) (Alg. 1 l.10)."""
    cc = jnp.maximum(counts, cfg.count_floor)
    if cfg.eviction == "inverse_square":
        s = -2.0 * jnp.log(cc) + g
    elif cfg.eviction == "inverse":
        s = -jnp.log(cc) + g
    elif cfg.eviction == "uniform":
        s = g
    else:  # smallest
        s = -counts
    empty = _EMPTY_SCORE - jnp.arange(counts.shape[0], dtype=jnp.float32)
    return jnp.where(filled, s, empty)


def query(cfg: RecodeConfig, state: RecodeState, e: jax.Array, block: int = _SCAN_BLOCK):
    """Pure, jit-able (with ``cfg`` and ``block`` static). Returns ``(knn_d2, knn_idx, count)``.

    Pseudo-counts (Alg. 1 l.1, Eq. 3) and the k nearest atoms (l.3) of every embedding, in one blocked
    pass over the memory (:func:`_scan_nearest`): each chunk of distances is reduced to per-block minima
    and to its share of the kernel sum while it is in cache, so the pseudo-count is the exact sum over
    all atoms and the k nearest are exact. Small memories take the dense path (one distance matrix).
    """
    M = state.atoms.shape[0]
    k = min(cfg.k, M)
    yy = _filled_sqnorms(state)
    if not _scan_pays(M, k, block):
        d2 = (-2.0 * e) @ state.atoms.T + jnp.sum(e * e, axis=1)[:, None] + yy[None, :]
        knn_d2, knn_idx = smallest_k(d2, k)
        count = _kernel_count(cfg, jnp.maximum(d2, 0.0), state.counts, state.dm2)
        return jnp.maximum(knn_d2, 0.0), knn_idx, count
    return _scan_nearest(e, state.atoms, yy, k, block, state.counts,
                         lambda d2, c: _kernel_count(cfg, d2, c, state.dm2))


def _evictee_neighbours(state: RecodeState, ranked: jax.Array, n_ins: jax.Array, kr: int, sizes: tuple[int, ...]):
    """The ``kr`` nearest other pre-batch atoms of the first ``n_ins`` evictees ``ranked[:n_ins]`` (Alg. 1
    l.11): (R, kr) squared distances (inf: padding or fewer atoms) and slots. Only as many rows as
    used are computed: ``lax.switch`` over row counts ``sizes`` (each capped at R) and R itself."""
    R = ranked.shape[0]
    M = state.atoms.shape[0]
    scan = _scan_pays(M, kr + 1)
    yy = _filled_sqnorms(state)

    def evictee_nbrs(n_rows: int):
        rows = ranked[:n_rows]
        if scan:
            # the kr + 1 nearest atoms (self included, unless tied duplicates push it out); drop self
            near, slots, _ = _scan_nearest(state.atoms[rows], state.atoms, yy, kr + 1, _SCAN_BLOCK)
            near = jnp.where(slots == rows[:, None], jnp.inf, near)
            neg, ci = jax.lax.top_k(-near, kr)
            val_r, idx_r = -neg, jnp.take_along_axis(slots, ci, axis=1)
        else:
            dd = sqdist(state.atoms[rows], state.atoms)
            dd = jnp.where(state.filled[None, :], dd, jnp.inf)
            dd = dd.at[jnp.arange(n_rows), rows].set(jnp.inf)
            val_r, idx_r = smallest_k(dd, kr)
        pad = R - n_rows
        return (jnp.pad(val_r, ((0, pad), (0, 0)), constant_values=jnp.inf), jnp.pad(idx_r, ((0, pad), (0, 0))))

    sizes = sorted({min(R, s) for s in sizes} | {R})
    branches = [functools.partial(evictee_nbrs, s) for s in sizes]
    which = jnp.searchsorted(jnp.asarray(sizes), n_ins, side="left")
    which = jnp.minimum(which, len(sizes) - 1)
    return jax.lax.switch(which, branches)


@functools.partial(jax.jit, static_argnums=0)
def reward(cfg: RecodeConfig, state: RecodeState, e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Intrinsic rewards (Eq. 2) and pseudo-counts (Alg. 1 l.1) of a (B, d) float32 batch; no update.

    Pure and jitted (``cfg`` static); no validation (:func:`checked_reward` validates first)."""
    _, _, count = query(cfg, state, e)
    return _reward(cfg, count), count


@functools.partial(jax.jit, static_argnums=0)
def step(cfg: RecodeConfig, state: RecodeState, e: jax.Array, noise: Noise) -> tuple[RecodeState, StepOutput]:
    """One call of the memory: rewards from the current memory, then the update with every embedding.

    ``e``: (B, d) float32 embeddings (B actors, or B consecutive steps of one actor); ``noise``: the
    random draws of this call (:func:`draw_noise`). Pure and jitted (``cfg`` static), so it can run
    inside ``jit``/``lax.scan``; no validation (:func:`checked_step` validates, then calls it).
    Returns the new state and a :class:`StepOutput` (rewards and pseudo-counts are pre-update).
    ``cfg.update`` picks the sequential update (B runs of Alg. 1 in batch order) or the parallel one
    (module docstring, "Parallel update").
    """
    if cfg.update == "parallel":
        return _step_parallel(cfg, state, e, noise)
    return _step_sequential(cfg, state, e, noise)


def _step_sequential(cfg: RecodeConfig, state: RecodeState, e: jax.Array,
                     noise: Noise) -> tuple[RecodeState, StepOutput]:
    """The sequential update: B consecutive runs of Algorithm 1 (two ``lax.scan`` passes over the batch)."""
    B = e.shape[0]
    M = cfg.memory_size
    k = min(cfg.k, M)
    R = min(B, M) if cfg.max_insertions is None else min(B, M, cfg.max_insertions)
    kr = min(cfg.redistribute_neighbours, max(M - 1, 1))
    gamma = jnp.float32(cfg.gamma)

    # ---- pre-batch snapshot: rewards, k-NN, eviction ranking (Alg. 1 l.1-3, l.10)
    knn_d2, knn_idx, count = query(cfg, state, e)  # (B, k) ascending; inf where fewer than k atoms
    reward = _reward(cfg, count)
    scores = _eviction_scores(cfg, state.counts * gamma, state.filled, noise.g)
    _, ranked = jax.lax.top_k(scores, R)  # evictee of the m-th insertion of this batch
    ranked = ranked.astype(jnp.int32)
    intra = sqdist(e, e)  # (B, B) distances between embeddings of the batch
    b_idx = jnp.arange(B)

    # ---- pass 1: decisions (d_m^2 recursion, nearest atom, insertion test), sequential over b
    def decide(carry, b):
        dm2, ready, n_ins, ins_mask, ins_slot = carry
        kd, ki = knn_d2[b], knn_idx[b]
        # atoms now: pre-batch k-NN not evicted earlier in this batch, and atoms created earlier
        evicted = jnp.any((ki[:, None] == ranked[None, :]) & (jnp.arange(R)[None, :] < n_ins), axis=1)
        surv = jnp.isfinite(kd) & ~evicted
        dn = jnp.where(ins_mask, intra[b], jnp.inf)
        # l.3-4: k nearest of those, d_m^2 running mean (first k-NN mean initialises it)
        near = -jax.lax.top_k(-jnp.concatenate([jnp.where(surv, kd, jnp.inf), dn]), k)[0]
        valid = jnp.isfinite(near)
        nv = jnp.sum(valid)
        mean = jnp.sum(jnp.where(valid, near, 0.0)) / jnp.maximum(nv, 1)
        new_dm2 = jnp.where(ready, (1.0 - cfg.tau) * dm2 + cfg.tau * mean, mean)
        dm2 = jnp.where(nv > 0, new_dm2, dm2)
        ready = ready | (nv > 0)
        # l.6: nearest atom
        first = jnp.argmax(surv)
        d_pre = jnp.where(jnp.any(surv), kd[first], jnp.inf)
        t_pre = ki[first]
        a = jnp.argmin(dn)
        use_new = dn[a] < d_pre
        dist = jnp.where(use_new, dn[a], d_pre)
        target = jnp.where(use_new, ins_slot[a], t_pre)
        no_atom = ~jnp.isfinite(dist)
        slot_new = ranked[jnp.minimum(n_ins, R - 1)]
        coin = noise.u[b] < cfg.eta
        if cfg.free_fill:
            coin = coin | ~state.filled[slot_new]
        want = no_atom | ((dist > cfg.kappa * dm2) & coin)  # l.7-8
        do_ins = want & (n_ins < R)
        slot = jnp.where(do_ins, slot_new, jnp.where(no_atom, -1, target))
        ins_mask = ins_mask.at[b].set(do_ins)
        ins_slot = ins_slot.at[b].set(jnp.where(do_ins, slot_new, -1))
        out = (do_ins, slot, jnp.where(do_ins, n_ins, -1), dist, want & ~do_ins & ~no_atom)
        return (dm2, ready, n_ins + do_ins.astype(jnp.int32), ins_mask, ins_slot), out

    carry0 = (state.dm2, state.dm2_ready, jnp.int32(0), jnp.zeros((B,), bool), jnp.full((B,), -1, jnp.int32))
    (dm2, ready, n_ins, ins_mask, _), (inserted, slot, ins_rank, near_d2, dropped) = jax.lax.scan(decide, carry0, b_idx)

    # ---- neighbours of the evictees among the pre-batch atoms (Alg. 1 l.11), only as many as used
    nbr_d2, nbr_idx = _evictee_neighbours(state, ranked, n_ins, kr, (1, 8, 32))
    ev_to_batch = sqdist(state.atoms[ranked], e)  # (R, B): evictee f_j to embeddings (new atoms)

    # ---- pass 2: apply the updates in batch order (Alg. 1 l.5, l.10-16)
    # Per-embedding discount (l.5) without touching all M counts B times: counts are held in units
    # of the batch start, true count at step b = stored * gamma^(b+1), when gamma^-B is representable.
    per_emb = cfg.discount_per == "embedding"
    lazy = per_emb and cfg.gamma ** B > 1e-30
    counts0 = state.counts * (gamma if cfg.discount_per == "call" else 1.0)

    def apply(carry, b):
        atoms, counts, filled, born = carry
        if per_emb and not lazy:
            counts = counts * gamma  # l.5
        unit = gamma ** (b + 1).astype(jnp.float32) if lazy else jnp.float32(1.0)  # stored -> true
        ins, s, m = inserted[b], slot[b], ins_rank[b]
        s_safe = jnp.maximum(s, 0)
        m_safe = jnp.maximum(m, 0)
        # hand-over target n of the evictee s: nearest surviving atom at this time
        was_filled = filled[s_safe]
        nd, ni = nbr_d2[m_safe], nbr_idx[m_safe]
        ev_before = jnp.any((ni[:, None] == ranked[None, :]) & (jnp.arange(R)[None, :] < m), axis=1)
        ok = jnp.isfinite(nd) & ~ev_before
        f = jnp.argmax(ok)
        d_pre = jnp.where(jnp.any(ok), nd[f], jnp.inf)
        new_before = ins_mask & (ins_rank < m) & (ins_rank >= 0)
        dn = jnp.where(new_before, ev_to_batch[m_safe], jnp.inf)
        a = jnp.argmin(dn)
        use_new = dn[a] < d_pre
        n = jnp.where(use_new, slot[a], ni[f])
        has_n = jnp.isfinite(jnp.minimum(d_pre, dn[a]))
        give = ins & was_filled & has_n
        counts = counts.at[n].add(jnp.where(give, counts[s_safe], 0.0))  # l.12
        # insertion (l.13) or merge (l.15-16)
        c_old = counts[s_safe] * unit
        merged = (c_old * atoms[s_safe] + e[b]) / (c_old + 1.0)
        row = jnp.where(ins, e[b], merged)
        cnt = jnp.where(ins, 1.0, c_old + 1.0) / unit
        act = s >= 0
        atoms = atoms.at[s_safe].set(jnp.where(act, row, atoms[s_safe]))
        counts = counts.at[s_safe].set(jnp.where(act, cnt, counts[s_safe]))
        filled = filled.at[s_safe].set(filled[s_safe] | (act & ins))
        born = born.at[s_safe].set(jnp.where(act & ins, state.n_seen + b, born[s_safe]))
        return (atoms, counts, filled, born), None

    (atoms, counts, filled, born), _ = jax.lax.scan(apply, (state.atoms, counts0, state.filled, state.born), b_idx)
    if lazy:
        counts = counts * gamma ** jnp.float32(B)
    new_state = RecodeState(atoms, counts, filled, born, dm2, ready, state.n_seen + B)
    out = StepOutput(reward, count, inserted, slot, near_d2, jnp.sum(dropped).astype(jnp.int32))
    return new_state, out


def _linear_recursion(a: jax.Array, c: jax.Array, x0: jax.Array) -> jax.Array:
    """All ``x_b = a_b x_{b-1} + c_b`` (b = 0..B-1) from ``x_{-1} = x0``, by an associative scan (depth log B)."""

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    big_a, big_c = jax.lax.associative_scan(combine, (a, c))
    return big_a * x0 + big_c


def _step_parallel(cfg: RecodeConfig, state: RecodeState, e: jax.Array,
                   noise: Noise) -> tuple[RecodeState, StepOutput]:
    """The parallel update: every embedding of the batch at once (module docstring, "Parallel update")."""
    B, d = e.shape
    M = cfg.memory_size
    R = min(B, M) if cfg.max_insertions is None else min(B, M, cfg.max_insertions)
    kr = min(cfg.redistribute_neighbours, max(M - 1, 1))
    gamma = jnp.float32(cfg.gamma)
    b_idx = jnp.arange(B)

    # ---- pre-batch snapshot: rewards, k-NN, eviction ranking (Alg. 1 l.1-3, l.10)
    knn_d2, knn_idx, count = query(cfg, state, e)  # (B, k) ascending; inf where fewer than k atoms
    reward = _reward(cfg, count)
    scores = _eviction_scores(cfg, state.counts * gamma, state.filled, noise.g)
    _, ranked = jax.lax.top_k(scores, R)  # evictee of the m-th insertion of this batch
    ranked = ranked.astype(jnp.int32)

    # ---- l.3-4: d_m^2 recursion over the batch, each embedding's k-NN mean over the pre-batch atoms
    # (on an empty memory: over the earlier embeddings of the batch, which play the atoms' part)
    intra = sqdist(e, e)
    has_atoms = jnp.any(state.filled)  # then every embedding has >= 1 pre-batch neighbour
    k = min(cfg.k, M)

    def knn_means(d2: jax.Array) -> tuple[jax.Array, jax.Array]:
        valid = jnp.isfinite(d2)
        nv = jnp.sum(valid, axis=1)
        return jnp.sum(jnp.where(valid, d2, 0.0), axis=1) / jnp.maximum(nv, 1), nv > 0

    def cold_means(_):
        prev = jnp.where(b_idx[None, :] < b_idx[:, None], intra, jnp.inf)
        return knn_means(-jax.lax.top_k(-prev, min(k, B))[0])

    mean, has_nbr = jax.lax.cond(has_atoms, lambda _: knn_means(knn_d2), cold_means, None)
    sets = has_nbr & (jnp.cumsum(has_nbr) == 1) & ~state.dm2_ready  # sets d_m^2 (no running mean yet)
    a = jnp.where(has_nbr, jnp.where(sets, 0.0, 1.0 - cfg.tau), 1.0).astype(jnp.float32)
    c = jnp.where(has_nbr, jnp.where(sets, mean, cfg.tau * mean), 0.0).astype(jnp.float32)
    dm2_b = _linear_recursion(a, c, state.dm2)  # d_m^2 after embedding b
    dm2 = dm2_b[-1]
    ready = state.dm2_ready | jnp.any(has_nbr)

    # ---- l.6-8: insertion decisions against the nearest pre-batch atom, all at once (on an empty
    # memory only the first embedding has no atom; the others are tested against earlier ones, step 4)
    d_near = knn_d2[:, 0]
    no_atom = jnp.where(has_atoms, ~jnp.isfinite(d_near), b_idx == 0)
    far = d_near > cfg.kappa * dm2_b  # inf > x: always far from an empty memory
    coin = noise.u < cfg.eta
    if cfg.free_fill:  # the m-th insertion of the batch takes an empty slot iff m < number of empty slots
        passes = (far | no_atom).astype(jnp.int32)
        coin = coin | ((jnp.cumsum(passes) - passes) < M - jnp.sum(state.filled))
    want = no_atom | (far & coin)
    # near-duplicate new atoms: one B x B pass; a candidate within kappa d_m^2 of an earlier one merges
    earlier = (b_idx[None, :] < b_idx[:, None]) & want[None, :]  # [b, b']: b' < b is a candidate
    d_earlier = jnp.min(jnp.where(earlier, intra, jnp.inf), axis=1)
    cand = want & ~(d_earlier <= cfg.kappa * dm2_b)
    rank = jnp.cumsum(cand.astype(jnp.int32)) - 1  # insertion index m of each candidate
    inserted = cand & (rank < R)
    n_ins = jnp.sum(inserted).astype(jnp.int32)
    ins_slot = jnp.where(inserted, ranked[jnp.clip(rank, 0, R - 1)], -1)
    evicted = jnp.zeros((M,), bool).at[ranked].set(jnp.arange(R) < n_ins) & state.filled

    # ---- l.15: merge target of every other embedding, the nearest atom after the batch's evictions
    # and insertions: its nearest surviving pre-batch atom among its k nearest, or a new atom
    surv = jnp.isfinite(knn_d2) & ~evicted[knn_idx]
    first = jnp.argmax(surv, axis=1)
    d_pre = jnp.where(jnp.any(surv, axis=1), jnp.take_along_axis(knn_d2, first[:, None], axis=1)[:, 0], jnp.inf)
    t_pre = jnp.take_along_axis(knn_idx, first[:, None], axis=1)[:, 0]
    dn = jnp.where(inserted[None, :], intra, jnp.inf)
    a_new = jnp.argmin(dn, axis=1)
    d_new = jnp.take_along_axis(dn, a_new[:, None], axis=1)[:, 0]
    target = jnp.where(d_new < d_pre, ins_slot[a_new], t_pre)
    has_target = jnp.isfinite(jnp.minimum(d_pre, d_new))
    slot = jnp.where(inserted, ins_slot, jnp.where(has_target, target, -1)).astype(jnp.int32)
    dropped = cand & ~inserted & has_target

    # ---- l.5, l.13, l.16: discounted running means as segment sums over the embeddings of each slot
    if cfg.discount_per == "embedding":  # a count present before the batch decays B times, e_b's B-1-b
        pre = gamma ** jnp.float32(B)
        w = gamma ** (B - 1 - b_idx).astype(jnp.float32)
    else:
        pre = gamma
        w = jnp.ones((B,), jnp.float32)
    counts = state.counts * pre
    seg = jnp.where(slot >= 0, slot, M)  # M: dropped embeddings
    uniq, inv = jnp.unique(seg, size=B, fill_value=M, return_inverse=True)
    inv = inv.reshape(B)
    w_sum = jax.ops.segment_sum(jnp.where(slot >= 0, w, 0.0), inv, num_segments=B)
    we_sum = jax.ops.segment_sum(w[:, None] * e, inv, num_segments=B)
    creator = jax.ops.segment_max(jnp.where(inserted, b_idx, -1), inv, num_segments=B)
    is_new = creator >= 0
    uslot = jnp.minimum(uniq, M - 1)
    base_w = jnp.where(is_new, 0.0, counts[uslot])  # a new atom starts from nothing
    base_f = jnp.where(is_new[:, None], e[jnp.maximum(creator, 0)], state.atoms[uslot])
    total = base_w + w_sum
    safe_total = jnp.where(total > 0, total, 1.0)[:, None]
    pos = jnp.where((total > 0)[:, None], (base_w[:, None] * base_f + we_sum) / safe_total, base_f)
    atoms = state.atoms.at[uniq].set(pos, mode="drop")
    counts = counts.at[uniq].set(total, mode="drop")

    # ---- l.11-12: count hand-over of each evictee to its nearest atom after the batch (position unchanged)
    nbr_d2, nbr_idx = _evictee_neighbours(state, ranked, n_ins, kr, (1, 8, 32, 128, 512))
    ok = jnp.isfinite(nbr_d2) & ~evicted[nbr_idx]
    f = jnp.argmax(ok, axis=1)
    h_pre = jnp.where(jnp.any(ok, axis=1), jnp.take_along_axis(nbr_d2, f[:, None], axis=1)[:, 0], jnp.inf)
    n_pre = jnp.take_along_axis(nbr_idx, f[:, None], axis=1)[:, 0]
    other_new = inserted[None, :] & (rank[None, :] != jnp.arange(R)[:, None])  # new atoms in other slots
    hn = jnp.where(other_new, sqdist(state.atoms[ranked], e), jnp.inf)  # (R, B)
    h_a = jnp.argmin(hn, axis=1)
    h_new = jnp.take_along_axis(hn, h_a[:, None], axis=1)[:, 0]
    heir = jnp.where(h_new < h_pre, ins_slot[h_a], n_pre)
    give = (jnp.arange(R) < n_ins) & state.filled[ranked] & jnp.isfinite(jnp.minimum(h_pre, h_new))
    counts = counts.at[jnp.where(give, heir, M)].add(state.counts[ranked] * pre, mode="drop")

    filled = state.filled.at[jnp.where(inserted, slot, M)].set(True, mode="drop")
    born = state.born.at[jnp.where(inserted, slot, M)].set(state.n_seen + b_idx, mode="drop")
    near_d2 = jnp.minimum(d_near, d_earlier)
    new_state = RecodeState(atoms, counts, filled, born, dm2, ready, state.n_seen + B)
    out = StepOutput(reward, count, inserted, slot, near_d2, jnp.sum(dropped).astype(jnp.int32))
    return new_state, out


# ----------------------------------------------------------------------------------------------
# Pure API (jit-able) beside :func:`step` and :func:`reward`


def update(cfg: RecodeConfig, state: RecodeState, e: jax.Array, noise: Noise) -> RecodeState:
    """The memory update of Algorithm 1 l.3-17 alone (:func:`step`, dropping the outputs); pure."""
    return step(cfg, state, e, noise)[0]


@functools.partial(jax.jit, static_argnums=0)
def run_stream(cfg: RecodeConfig, state: RecodeState, stream: jax.Array,
               key: jax.Array) -> tuple[RecodeState, StepOutput]:
    """Feed a (T, B, d) float32 stream through :func:`step` with one ``lax.scan``; pure and jitted.

    Call ``t`` draws its noise from the ``t``-th of ``jax.random.split(key, T)``."""
    keys = jax.random.split(key, stream.shape[0])

    def body(s, xs):
        e, kk = xs
        return step(cfg, s, e, draw_noise(cfg, kk, e.shape[0]))

    return jax.lax.scan(body, state, (stream, keys))


# ----------------------------------------------------------------------------------------------
# Boundary API (outside jit): validate the inputs, then call the pure function.


def checked_reward(cfg: RecodeConfig, state: RecodeState, embeddings) -> tuple[jax.Array, jax.Array]:
    """:func:`reward` after :func:`check_embeddings` (any (B, d) floating array-like)."""
    return reward(cfg, state, check_embeddings(state, embeddings))


def checked_step(cfg: RecodeConfig, state: RecodeState, embeddings, key=None, *,
                 noise: Noise | None = None) -> tuple[RecodeState, StepOutput]:
    """:func:`step` after validating ``embeddings`` (B, d) and either ``key`` (a JAX PRNG key, from
    which the noise is drawn with :func:`draw_noise`) or explicit ``noise``."""
    e = check_embeddings(state, embeddings)
    if noise is None:
        if key is None:
            raise ValueError("step needs a PRNG key (replicate.rng.key(seed)) or explicit noise")
        check_key(key)
        noise = draw_noise(cfg, key, e.shape[0])
    elif noise.u.shape != (e.shape[0],) or noise.g.shape != (cfg.memory_size,):
        raise ValueError(f"noise shapes u{noise.u.shape}, g{noise.g.shape} do not match batch {e.shape[0]} "
                         f"and memory {cfg.memory_size}")
    return step(cfg, state, e, noise)


def checked_update(cfg: RecodeConfig, state: RecodeState, embeddings, key=None, *,
                   noise: Noise | None = None) -> RecodeState:
    """:func:`update` with the validation of :func:`checked_step`."""
    return checked_step(cfg, state, embeddings, key, noise=noise)[0]


def checked_run_stream(cfg: RecodeConfig, state: RecodeState, stream, key: jax.Array) -> tuple[RecodeState, StepOutput]:
    """:func:`run_stream` after validating the (T, B, d) ``stream`` and the key."""
    check_key(key)
    stream = jnp.asarray(stream)
    if stream.ndim != 3:
        raise ValueError(f"stream has shape {stream.shape}; expected (T, batch, dim)")
    check_embeddings(state, stream.reshape(-1, stream.shape[-1]), name="stream")
    return run_stream(cfg, state, stream.astype(jnp.float32), key)


def n_atoms(state: RecodeState) -> int:
    return int(jnp.sum(state.filled))


def effective_memory_horizon(gamma: float) -> float:
    """1 / (1 - gamma): the number of embeddings a count 'remembers' (inf for gamma = 1)."""
    return math.inf if gamma >= 1 else 1.0 / (1.0 - gamma)
