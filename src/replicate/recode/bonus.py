"""Intrinsic-reward bonuses for :mod:`replicate.rl.ppo`, one small interface over RECODE's estimators.

A :class:`Bonus` is a pair of pure, jittable functions over an explicit state pytree:

* ``init(key, env) -> state``;
* ``intrinsic(state, rollout, key) -> (state, r_int, info)``: the raw intrinsic reward ``r_int``
  (T, E) of every transition of a rollout (:class:`replicate.rl.ppo.Rollout`), computed on the
  *true next observation* of the transition, followed by whatever learning the bonus does
  (memory updates, RND's predictor, the AP embedding). ``info``: a dict of scalars to log.

Rewards are computed after the rollout is collected (they do not influence the actions inside
it, exactly as in RND/CleanRL), but step by step in time order, so a memory sees the rollout's
states in the order they were visited and each reward is computed *before* its own embedding
is added (RECODE Alg. 1 l.1-2; NGU Alg. 1).

Bonuses (estimators from :mod:`replicate.recode`, RECODE I):

* ``none``: no bonus (PPO's ``int_coef`` is then ignored).
* ``counts``: exact tabular counts of the true state, ``r = 1/(sqrt(N) + c)`` (an oracle: it
  needs the true state; RECODE's pseudo-count estimates this).
* ``rnd``: RND (Burda et al. 2019); the predictor trains on the rollout's next observations,
  ``epochs x minibatches`` Adam steps after the rewards are computed (as in the RND paper's PPO).
* ``emm``: the paper's EMM, NGU's episodic memory module alone (Badia et al. 2020, App. A.1; constants
  App. F), per environment, memory emptied at every episode start; the episode's first observation is
  inserted when it is seen.
* ``ngu``: NGU proper (Badia et al. 2020, Sec. 2): EMM's reward times RND's life-long novelty factor
  ``min(max(alpha_t, 1), L)``, ``alpha_t = 1 + (err_t - mu_err) / sigma_err``, ``L = 5``
  (:func:`replicate.recode.baselines.ngu_reward`). ``err_t`` is RND's prediction error on the true next
  observation, computed before the predictor trains on the rollout (as in ``rnd``); ``mu_err`` and
  ``sigma_err`` are running moments of ``err`` that include the current rollout (our choice of order:
  the first rollout is then normalised by its own moments). The episodic and RND parts are exactly the
  ``emm`` and ``rnd`` cores.
* ``recode``: RECODE's memory (Saade et al. 2023, Alg. 1), one memory shared by all
  environments, never reset; one call of Algorithm 1 per time step with the E embeddings.

Embeddings for ``emm``, ``ngu`` and ``recode`` (:class:`EmbeddingConfig`): ``random`` (a fixed Gaussian
random projection of the observation; for one-hot DeepSea observations this is a near-orthogonal
code of the cell), ``identity`` (the observation itself), ``ap`` (NGU's inverse-dynamics
encoder, RECODE Sec. 4 Eq. 4, trained online on the agent's own rollouts) or ``casm`` (RECODE's
masked-transformer multi-step inverse dynamics, Sec. 4, trained online on windows of
``casm_seq_len`` consecutive steps cut from each environment's rollout; an action whose transition
ended an episode carries no loss, since the rollout's next observation is then a reset). Both
learned embeddings take ``ap_epochs x ap_minibatches`` Adam steps per rollout, after the rewards.

The bonuses call the pure, jit-able cores (``memory.step``, ``baselines.episodic_step``,
``tabular_step``, ``rnd_step``, ``representations.ap_train_step``/``casm_train_step``) inside ``jit``;
inputs are validated at this module's boundary (``make_bonus``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from replicate.params import ParameterError
from replicate.recode import baselines, memory, representations
from replicate.rl.normalisation import RunningMeanStd

BONUSES = ("none", "counts", "rnd", "emm", "ngu", "recode")
EMBEDDINGS = ("random", "identity", "ap", "casm")


@dataclasses.dataclass(frozen=True)
class Bonus:
    name: str
    init: Callable[[jax.Array, Any], Any]
    intrinsic: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    """Embedding of observations for EMM/NGU/RECODE.

    kind: 'random' | 'identity' | 'ap' | 'casm'. dim: embedding size (random, ap, casm).
    ap_hidden, ap_learning_rate: the encoder (and AP classifier) widths and Adam step size (ap, casm).
    ap_epochs, ap_minibatches: training passes / minibatches per rollout of the learned embeddings.
    casm_seq_len: CASM window length (must divide the rollout length); casm_layers, casm_dim,
    casm_heads: its transformer; casm_masks: masks sampled per window (Sec. 4).
    """

    kind: str = "random"
    dim: int = 32
    ap_hidden: tuple[int, ...] = (128,)
    ap_learning_rate: float = 5e-4
    ap_epochs: int = 1
    ap_minibatches: int = 4
    casm_seq_len: int = 8
    casm_layers: int = 1
    casm_dim: int = 64
    casm_heads: int = 4
    casm_masks: int = 4

    def __post_init__(self) -> None:
        if self.kind not in EMBEDDINGS:
            raise ParameterError(f"EmbeddingConfig: kind={self.kind!r}; choose one of {EMBEDDINGS}")
        if self.dim < 1 or self.ap_epochs < 0 or self.ap_minibatches < 1:
            raise ParameterError(f"EmbeddingConfig: need dim >= 1, ap_epochs >= 0, ap_minibatches >= 1, got {self}")
        if self.casm_seq_len < 2 or self.casm_layers < 1 or self.casm_masks < 1 or self.casm_dim % self.casm_heads:
            raise ParameterError("EmbeddingConfig: need casm_seq_len >= 2, casm_layers >= 1, casm_masks >= 1 and "
                                 f"casm_dim divisible by casm_heads, got {self}")


# ----------------------------------------------------------------------------------------------
# Embeddings: state pytree, embed(state, obs), train(state, rollout, key)


def _ap_cfg(ecfg: EmbeddingConfig, env) -> representations.APConfig:
    return representations.APConfig(
        obs_dim=env.obs_dim,
        n_actions=env.n_actions,
        embed_dim=ecfg.dim,
        hidden=tuple(ecfg.ap_hidden),
        classifier_hidden=tuple(ecfg.ap_hidden),
        learning_rate=ecfg.ap_learning_rate,
    )


def _embedding(ecfg: EmbeddingConfig, env):
    """(dim, init(key), embed(state, obs), train(state, rollout, key) -> (state, info))."""
    if ecfg.kind == "identity":
        return env.obs_dim, (lambda k: ()), (lambda s, o: o), (lambda s, r, k: (s, {}))
    if ecfg.kind == "random":

        def init(k):
            return jax.random.normal(k, (env.obs_dim, ecfg.dim), jnp.float32) / jnp.sqrt(ecfg.dim)

        return ecfg.dim, init, (lambda w, o: o @ w), (lambda s, r, k: (s, {}))

    if ecfg.kind == "casm":
        return _casm_embedding(ecfg, env)
    apcfg = _ap_cfg(ecfg, env)

    def embed(st, o):
        return representations.ap_embed(apcfg, st.params, o)

    def train(st, ro, key):
        o = ro.obs.reshape(-1, env.obs_dim)
        o2 = ro.next_obs.reshape(-1, env.obs_dim)
        a = ro.action.reshape(-1)
        n = o.shape[0]
        mb = n // ecfg.ap_minibatches
        infos = {"ap_loss": jnp.zeros(()), "ap_accuracy": jnp.zeros(())}
        for kk in jax.random.split(key, ecfg.ap_epochs):
            perm = jax.random.permutation(kk, n)[: mb * ecfg.ap_minibatches].reshape(ecfg.ap_minibatches, mb)

            def step(s, idx):
                s, info = representations.ap_train_step(apcfg, s, o[idx], a[idx], o2[idx])
                return s, info

            st, info = jax.lax.scan(step, st, perm)
            infos = {"ap_loss": jnp.mean(info["loss"]), "ap_accuracy": jnp.mean(info["accuracy"])}
        return st, infos

    return ecfg.dim, (lambda k: representations.init_ap(apcfg, k)), embed, train


def _casm_cfg(ecfg: EmbeddingConfig, env) -> representations.CASMConfig:
    return representations.CASMConfig(
        obs_dim=env.obs_dim,
        n_actions=env.n_actions,
        embed_dim=ecfg.dim,
        encoder_hidden=tuple(ecfg.ap_hidden),
        model_dim=ecfg.casm_dim,
        n_layers=ecfg.casm_layers,
        n_heads=ecfg.casm_heads,
        seq_len=ecfg.casm_seq_len,
        n_masks=ecfg.casm_masks,
        classifier_hidden=tuple(ecfg.ap_hidden),
        learning_rate=ecfg.ap_learning_rate,
    )


def rollout_windows(obs, actions, done, seq_len: int):
    """Cut (T, E, ...) rollouts into (E * T // seq_len, seq_len, ...) windows of consecutive steps.

    Returns ``(obs, actions, valid)``; ``valid[w, t]`` is False where the transition of ``a_t`` ended
    the episode (``o_{t+1}`` in the window is then the next episode's first observation). Steps past
    the last whole window are dropped.
    """
    t, e = actions.shape
    n = t // seq_len
    if n < 1:
        raise ParameterError(f"CASM window casm_seq_len={seq_len} is longer than the rollout (num_steps={t})")

    def cut(x):
        x = x[: n * seq_len].reshape(n, seq_len, e, *x.shape[2:])
        return jnp.moveaxis(x, 2, 0).reshape(e * n, seq_len, *x.shape[3:])

    return cut(obs), cut(actions), ~cut(done)


def _casm_embedding(ecfg: EmbeddingConfig, env):
    """CASM trained online: windows of each environment's rollout, ``ap_epochs x ap_minibatches`` Adam steps."""
    ccfg = _casm_cfg(ecfg, env)

    def embed(st, o):
        return representations.CASMModel(ccfg).apply(st.params, o, method=representations.CASMModel.embed)

    def train(st, ro, key):
        o, a, valid = rollout_windows(ro.obs, ro.action, ro.done, ccfg.seq_len)
        n = o.shape[0]
        mbs = min(ecfg.ap_minibatches, n)
        mb = n // mbs
        infos = {"casm_loss": jnp.zeros(()), "casm_accuracy": jnp.zeros(())}
        for kk in jax.random.split(key, ecfg.ap_epochs):
            k_perm, k_mask = jax.random.split(kk)
            perm = jax.random.permutation(k_perm, n)[: mb * mbs].reshape(mbs, mb)

            def step(s, xs):
                idx, km = xs
                return representations.casm_train_step(ccfg, s, o[idx], a[idx], km, valid[idx])

            st, info = jax.lax.scan(step, st, (perm, jax.random.split(k_mask, mbs)))
            infos = {"casm_loss": jnp.mean(info["loss"]), "casm_accuracy": jnp.mean(info["accuracy"])}
        return st, infos

    return ecfg.dim, (lambda k: representations.init_casm(ccfg, k)), embed, train


def _flat_embed(embed, st, x):
    """Embed a (T, E, obs_dim) array -> (T, E, d)."""
    t, e = x.shape[:2]
    return embed(st, x.reshape(t * e, -1)).reshape(t, e, -1)


# ----------------------------------------------------------------------------------------------
# Bonuses


def counts_bonus(n_states: int, *, gamma: float = 1.0, c: float = 1e-3) -> Bonus:
    cfg = baselines.TabularConfig(n_states=int(n_states), gamma=gamma, c=c)

    def init(key, env):
        return baselines.init_tabular(cfg)

    def intrinsic(counts, ro, key):
        def body(cnt, ids):
            cnt, est = baselines.tabular_step(cfg, cnt, ids)
            return cnt, est.reward

        counts, r = jax.lax.scan(body, counts, ro.next_state_id.astype(jnp.int32))
        return counts, r, {}

    return Bonus("counts", init, intrinsic)


def _rnd_train(cfg: baselines.RNDConfig, st, x, key, epochs: int, minibatches: int):
    """``epochs x minibatches`` Adam steps of RND's predictor on the (N, d) inputs ``x``."""
    n = x.shape[0]
    mb = n // minibatches
    for kk in jax.random.split(key, epochs):
        perm = jax.random.permutation(kk, n)[: mb * minibatches].reshape(minibatches, mb)
        st, _ = jax.lax.scan(lambda s, idx: baselines.rnd_step(cfg, s, x[idx]), st, perm)
    return st


def rnd_bonus(cfg: baselines.RNDConfig = baselines.RNDConfig(), *, epochs: int = 4, minibatches: int = 4) -> Bonus:
    def init(key, env):
        return baselines.init_rnd(cfg, key, env.obs_dim)

    def intrinsic(st, ro, key):
        t, e, d = ro.next_obs.shape
        x = ro.next_obs.reshape(t * e, d)
        r = baselines.rnd_reward(cfg, st, x).reshape(t, e)  # before training on this rollout
        return _rnd_train(cfg, st, x, key, epochs, minibatches), r, {}

    return Bonus("rnd", init, intrinsic)


def _episodic_rewards(cfg: baselines.EpisodicConfig, mem, e_obs, e_next, first):
    """EMM's rewards (T, E) of the embedded next observations ``e_next`` (T, E, d), step by step; at an
    episode's first step (``first``) the memory is emptied and ``e_obs`` (its first observation) inserted."""

    def body(mem, xs):
        eo, en, fst = xs
        # a new episode: empty the memory and insert its first observation
        started, _ = baselines.episodic_step(cfg, mem, eo, jnp.ones_like(fst))
        mem = jax.tree.map(lambda a, b: jnp.where(fst.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), started, mem)
        mem, est = baselines.episodic_step(cfg, mem, en, jnp.zeros_like(fst))
        return mem, est.reward

    return jax.lax.scan(body, mem, (e_obs, e_next, first))


def emm_bonus(cfg: baselines.EpisodicConfig, ecfg: EmbeddingConfig = EmbeddingConfig()) -> Bonus:
    """The paper's EMM: NGU's episodic memory module alone."""

    def init(key, env):
        dim, e_init, _, _ = _embedding(ecfg, env)
        return {"memory": baselines.init_episodic(cfg, env.num_envs_hint, dim), "embed": e_init(key)}

    def make(env):
        _, _, embed, train = _embedding(ecfg, env)

        def intrinsic(st, ro, key):
            e_obs = _flat_embed(embed, st["embed"], ro.obs)
            e_next = _flat_embed(embed, st["embed"], ro.next_obs)
            mem, r = _episodic_rewards(cfg, st["memory"], e_obs, e_next, ro.first)
            emb, info = train(st["embed"], ro, key)
            return {"memory": mem, "embed": emb}, r, info

        return intrinsic

    return _EnvBound("emm", init, make)


def ngu_bonus(cfg: baselines.EpisodicConfig, ecfg: EmbeddingConfig = EmbeddingConfig(),
              rnd: baselines.RNDConfig = baselines.RNDConfig(), ngu: baselines.NGUConfig = baselines.NGUConfig(),
              *, epochs: int = 4, minibatches: int = 4) -> Bonus:
    """NGU proper: EMM's episodic reward times RND's life-long novelty factor (module docstring)."""

    def init(key, env):
        dim, e_init, _, _ = _embedding(ecfg, env)
        k_emb, k_rnd = jax.random.split(key)
        return {"memory": baselines.init_episodic(cfg, env.num_envs_hint, dim), "embed": e_init(k_emb),
                "rnd": baselines.init_rnd(rnd, k_rnd, env.obs_dim), "err_rms": RunningMeanStd.create()}

    def make(env):
        _, _, embed, train = _embedding(ecfg, env)

        def intrinsic(st, ro, key):
            k_emb, k_rnd = jax.random.split(key)
            e_obs = _flat_embed(embed, st["embed"], ro.obs)
            e_next = _flat_embed(embed, st["embed"], ro.next_obs)
            mem, r_epi = _episodic_rewards(cfg, st["memory"], e_obs, e_next, ro.first)
            t, e, d = ro.next_obs.shape
            x = ro.next_obs.reshape(t * e, d)
            err = baselines.rnd_reward(rnd, st["rnd"], x).reshape(t, e)  # before training on this rollout
            err_rms = st["err_rms"].update(err)
            mod = baselines.ngu_modulation(ngu, err, err_rms.mean, err_rms.std())
            rnd_state = _rnd_train(rnd, st["rnd"], x, k_rnd, epochs, minibatches)
            emb, info = train(st["embed"], ro, k_emb)
            info = {**info, "ngu_modulation": jnp.mean(mod), "ngu_episodic": jnp.mean(r_epi)}
            return {"memory": mem, "embed": emb, "rnd": rnd_state, "err_rms": err_rms}, r_epi * mod, info

        return intrinsic

    return _EnvBound("ngu", init, make)


def recode_bonus(cfg: memory.RecodeConfig, ecfg: EmbeddingConfig = EmbeddingConfig()) -> Bonus:
    def init(key, env):
        dim, e_init, _, _ = _embedding(ecfg, env)
        return {"memory": memory.init(cfg, dim), "embed": e_init(key)}

    def make(env):
        _, _, embed, train = _embedding(ecfg, env)

        def intrinsic(st, ro, key):
            e_next = _flat_embed(embed, st["embed"], ro.next_obs)
            k_mem, k_emb = jax.random.split(key)

            def body(mem, xs):
                en, kk = xs
                mem, out = memory.step(cfg, mem, en, memory.draw_noise(cfg, kk, en.shape[0]))
                return mem, (out.reward, out.inserted)

            mem, (r, ins) = jax.lax.scan(body, st["memory"], (e_next, jax.random.split(k_mem, e_next.shape[0])))
            emb, info = train(st["embed"], ro, k_emb)
            info = {
                **info,
                "recode_atoms": jnp.sum(mem.filled),
                "recode_dm2": mem.dm2,
                "recode_inserted": jnp.mean(ins),
            }
            return {"memory": mem, "embed": emb}, r, info

        return intrinsic

    return _EnvBound("recode", init, make)


@dataclasses.dataclass(frozen=True)
class _EnvBound:
    """A bonus whose functions need the environment (embedding sizes); bound by :func:`bind`."""

    name: str
    init_fn: Callable
    make_fn: Callable


def bind(bonus, env, num_envs: int) -> Bonus | None:
    """Bind an environment-dependent bonus to ``env`` (and the number of parallel environments)."""
    if bonus is None or isinstance(bonus, Bonus):
        return bonus
    env = _WithEnvs(env, num_envs)
    return Bonus(bonus.name, lambda key, _env: bonus.init_fn(key, env), bonus.make_fn(env))


class _WithEnvs:
    def __init__(self, env, num_envs):
        self._env, self.num_envs_hint = env, int(num_envs)

    def __getattr__(self, name):
        return getattr(self._env, name)


@dataclasses.dataclass(frozen=True)
class BonusConfig:
    """Everything a bonus needs besides its name and the environment (one config for every run type).

    embedding: the observation embedding of ``emm``, ``ngu`` and ``recode``. recode: RECODE's memory (its
    defaults, :class:`replicate.recode.memory.RecodeConfig`, own ``memory_size`` and ``gamma``). episodic: NGU's
    episodic memory of ``emm`` and ``ngu`` (``None``: NGU's constants with capacity ``max(10, max_episode_steps +
    1)`` of the environment, NGU's 30 000 without a step limit). rnd, rnd_epochs, rnd_minibatches: RND's networks
    and its predictor's Adam steps per rollout (``rnd`` and ``ngu``). ngu: NGU's modulation (``L``).
    count_c: the constant ``c`` of the oracle ``counts`` bonus ``1 / (sqrt(N) + c)``.
    """

    embedding: EmbeddingConfig = EmbeddingConfig()
    recode: memory.RecodeConfig = memory.RecodeConfig()
    episodic: baselines.EpisodicConfig | None = None
    rnd: baselines.RNDConfig = baselines.RNDConfig()
    rnd_epochs: int = 4
    rnd_minibatches: int = 4
    ngu: baselines.NGUConfig = baselines.NGUConfig()
    count_c: float = 1e-3

    def __post_init__(self) -> None:
        if self.rnd_epochs < 1 or self.rnd_minibatches < 1:
            raise ParameterError(
                f"BonusConfig: need rnd_epochs >= 1 and rnd_minibatches >= 1, got {self.rnd_epochs}, "
                f"{self.rnd_minibatches}"
            )
        if self.count_c <= 0:
            raise ParameterError(f"BonusConfig: count_c={self.count_c} must be > 0")


def make_bonus(name: str, env, num_envs: int, cfg: BonusConfig = BonusConfig()) -> Bonus | None:
    """The bonus called ``name`` (one of :data:`BONUSES`) bound to ``env``; ``None`` for 'none'.

    The one constructor of bonuses: the DeepSea/MiniGrid runs (:mod:`replicate.recode.agents`) and the Atari
    agent (:mod:`replicate.recode.atari_agent`) build a :class:`BonusConfig` from their run config and call it.
    """
    if name not in BONUSES:
        raise ParameterError(f"bonus {name!r} is unknown; choose one of {BONUSES}")
    if name == "none":
        return None
    if name == "counts":
        if env.n_states is None:
            raise ParameterError(f"bonus 'counts' needs the true state; environment {env.name} has no n_states")
        return counts_bonus(env.n_states, c=cfg.count_c)
    if name == "rnd":
        return rnd_bonus(cfg.rnd, epochs=cfg.rnd_epochs, minibatches=cfg.rnd_minibatches)
    if name in ("emm", "ngu"):
        steps = env.max_episode_steps
        epi = cfg.episodic or (baselines.EpisodicConfig(capacity=max(10, steps + 1)) if steps else
                               baselines.EpisodicConfig())
        if name == "emm":
            return bind(emm_bonus(epi, cfg.embedding), env, num_envs)
        return bind(ngu_bonus(epi, cfg.embedding, cfg.rnd, cfg.ngu, epochs=cfg.rnd_epochs,
                              minibatches=cfg.rnd_minibatches), env, num_envs)
    return bind(recode_bonus(cfg.recode, cfg.embedding), env, num_envs)
