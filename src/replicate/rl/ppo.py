"""PPO in pure JAX with an intrinsic-reward stream (PureJaxRL layout, RND's two value heads).

The whole training run is one function of a PRNG key, ``train = make_train(cfg, env, bonus)``,
that ``jit``s (and maps over seeds, :func:`train_seeds`): a ``lax.scan`` over updates, inside it a ``lax.scan``
over ``num_steps`` environment steps of ``num_envs`` environments, then ``update_epochs`` epochs
of a ``lax.scan`` over ``num_minibatches`` minibatches (Lu et al. 2022, PureJaxRL).

Rules and where they come from:

* Clipped surrogate objective (Schulman et al. 2017, Eq. 7):
  ``L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]`` with ``rho = pi(a|s) / pi_old(a|s)``,
  plus ``vf_coef`` times the value loss and minus ``ent_coef`` times the entropy (Eq. 9).
* GAE (Schulman et al. 2016, Eq. 16): ``delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)``,
  ``A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}``; returns ``A_t + V(s_t)`` are the value targets.
* Two reward streams with separate value heads and discounts (Burda et al. 2019, RND, Sec. 2.3):
  extrinsic (episodic: ``d_t`` cuts the bootstrap) and intrinsic (non-episodic by default: an
  episode's end does not stop the intrinsic return, ``int_episodic=False``); the policy's
  advantage is ``ext_coef A_E + int_coef A_I`` (RND: 2 and 1).
* Intrinsic reward normalisation (RND Sec. 2.4): the intrinsic reward is divided by a running
  estimate of the standard deviation of the *discounted intrinsic return*, computed by running
  ``R_t = gamma_I R_{t-1} + r_t`` **over time** in every environment (the filter carries across
  rollouts), and merging each rollout's ``R`` values into running moments. (A known bug in some
  peers runs the filter over the environment axis instead.) ``int_norm="reward"`` divides by the
  running standard deviation of the rewards themselves (RECODE Sec. 3's wording); ``"none"`` off.

Defaults are the RND paper's PPO hyper-parameters (Burda et al. 2019, App. A, Table 5 for Atari:
``gamma_E = 0.999``, ``gamma_I = 0.99``, ``lambda = 0.95``, clip 0.1, entropy 0.001, learning
rate 1e-4, 4 epochs, 4 minibatches, rollout 128, coefficients 2 and 1) except the network
(an MLP for vector observations) and ``num_envs`` (RND: 128 for Atari; a profile parameter here).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate import resumable
from replicate.nn.actor_critic import ActorCritic
from replicate.params import ParameterError
from replicate.rl import exploration
from replicate.rl.envs import Adapter
from replicate.rl.normalisation import RunningMeanStd

INT_NORMS = ("return", "reward", "none")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Every hyper-parameter of the agent (defaults: RND, Burda et al. 2019, Table 5).

    num_envs: parallel environments E. num_steps: rollout length T per environment.
    total_timesteps: environment steps of the run (``num_updates = total // (E T)``).
    update_epochs, num_minibatches: passes over the rollout and minibatches per pass.
    learning_rate: Adam step size (``anneal_lr``: linear decay to 0). adam_eps: Adam epsilon.
    gamma, gamma_int: discounts of the extrinsic and intrinsic streams. gae_lambda: GAE lambda.
    clip_eps: PPO's epsilon. ent_coef, vf_coef: loss weights. max_grad_norm: global-norm clip.
    clip_value: clip the value update like the policy (CleanRL's ``clip_vloss``).
    ext_coef, int_coef: advantage weights. int_episodic: episode ends cut intrinsic returns.
    int_norm: 'return' (RND), 'reward' (RECODE Sec. 3) or 'none'.
    normalise_advantages: per-minibatch advantage standardisation (PureJaxRL, CleanRL).
    hidden, activation: the actor and critic MLPs (separate trunks; the critic has two heads).
    unroll_learn: unroll :func:`learn`'s epoch and minibatch scans (same result, larger program). XLA:CPU runs
    convolution gradients about 10x slower inside a ``lax.scan`` than unrolled (measured: 8 Nature-CNN steps on
    128 frames, 43.9 s scanned, 3.9 s unrolled), so the Atari agent sets it; the MLP agents keep the scan.
    """

    num_envs: int = 32
    num_steps: int = 128
    total_timesteps: int = 1_000_000
    update_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = 1e-4
    anneal_lr: bool = False
    adam_eps: float = 1e-5
    gamma: float = 0.999
    gamma_int: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.1
    ent_coef: float = 0.001
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    clip_value: bool = False
    ext_coef: float = 2.0
    int_coef: float = 1.0
    int_episodic: bool = False
    int_norm: str = "return"
    normalise_advantages: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    unroll_learn: bool = False

    def __post_init__(self) -> None:
        def need(cond, msg):
            if not cond:
                raise ParameterError(f"PPOConfig: {msg}")

        for name in ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches"):
            v = getattr(self, name)
            need(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                f"{name}={v!r} must be an int >= 1",
            )
        need(
            self.batch_size % self.num_minibatches == 0,
            f"num_envs * num_steps = {self.batch_size} is not divisible by num_minibatches={self.num_minibatches}",
        )
        need(
            self.total_timesteps >= self.batch_size,
            f"total_timesteps={self.total_timesteps} is below one rollout (num_envs * num_steps = {self.batch_size})",
        )
        for name in ("gamma", "gamma_int", "gae_lambda"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name}={getattr(self, name)} must be in [0, 1]")
        need(self.clip_eps > 0, f"clip_eps={self.clip_eps} must be > 0")
        need(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0")
        need(self.int_norm in INT_NORMS, f"int_norm={self.int_norm!r}; choose one of {INT_NORMS}")
        need(isinstance(self.unroll_learn, bool), f"unroll_learn={self.unroll_learn!r} must be True or False")
        need(self.activation in ("tanh", "relu"), f"activation={self.activation!r}; choose 'tanh' or 'relu'")
        need(
            len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            f"hidden={self.hidden} needs >= 1 positive widths",
        )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# GAE, loss, intrinsic normalisation (public: tested against NumPy / hand computations)


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimates and value targets over time axis 0.

    ``rewards``, ``values``, ``dones``: (T, ...); ``dones[t]`` = the episode ended with transition
    ``t`` (no bootstrap from ``t + 1``); ``last_value``: V of the observation after the rollout.
    """
    dones = jnp.asarray(dones, jnp.float32)

    def body(carry, x):
        adv_next, v_next = carry
        r, v, d = x
        delta = r + gamma * v_next * (1.0 - d) - v
        adv = delta + gamma * lam * (1.0 - d) * adv_next
        return (adv, v), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, adv = jax.lax.scan(body, init, (rewards, values, dones), reverse=True)
    return adv, adv + values


def categorical_logp_entropy(logits, actions):
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    return logp, entropy


def ppo_loss(cfg: PPOConfig, logits, v_ext, v_int, batch, int_weight: float = 1.0):
    """The PPO loss of one minibatch (Schulman et al. 2017, Eqs. 7 and 9) and its terms.

    ``batch`` holds ``action, logp, adv`` (combined advantage), ``v_ext, v_int`` (old values) and
    ``ret_ext, ret_int`` (targets). ``int_weight = 0`` drops the intrinsic value loss.
    """
    logp, entropy = categorical_logp_entropy(logits, batch["action"])
    adv = batch["adv"]
    if cfg.normalise_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = jnp.exp(logp - batch["logp"])
    pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv))

    def vloss(v, v_old, ret):
        unclipped = (v - ret) ** 2
        if not cfg.clip_value:
            return 0.5 * jnp.mean(unclipped)
        clipped = (v_old + jnp.clip(v - v_old, -cfg.clip_eps, cfg.clip_eps) - ret) ** 2
        return 0.5 * jnp.mean(jnp.maximum(unclipped, clipped))

    v_loss = vloss(v_ext, batch["v_ext"], batch["ret_ext"]) + int_weight * vloss(
        v_int, batch["v_int"], batch["ret_int"]
    )
    ent = jnp.mean(entropy)
    total = pg + cfg.vf_coef * v_loss - cfg.ent_coef * ent
    approx_kl = jnp.mean((ratio - 1.0) - jnp.log(ratio))
    clipfrac = jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_eps)
    return total, {"pg_loss": pg, "v_loss": v_loss, "entropy": ent, "approx_kl": approx_kl, "clipfrac": clipfrac}


class IntNormState(NamedTuple):
    filt: jax.Array  # (E,) discounted intrinsic return R of each environment (carried over rollouts)
    moments: RunningMeanStd  # running moments of the discounted intrinsic returns (or rewards)


def int_norm_init(num_envs: int) -> IntNormState:
    return IntNormState(jnp.zeros((num_envs,), jnp.float32), RunningMeanStd.create())


def normalise_intrinsic(state: IntNormState, r_int, gamma_int: float, mode: str = "return"):
    """Divide (T, E) intrinsic rewards by a running std (see module doc); returns (state, rewards)."""
    if mode == "none":
        return state, r_int
    if mode == "reward":
        m = state.moments.update(r_int)
        return IntNormState(state.filt, m), r_int / jnp.sqrt(m.var + 1e-8)

    def body(filt, r):  # over time, one filter per environment
        filt = gamma_int * filt + r
        return filt, filt

    filt, rets = jax.lax.scan(body, state.filt, r_int)
    m = state.moments.update(rets)
    return IntNormState(filt, m), r_int / jnp.sqrt(m.var + 1e-8)


def intrinsic_stats(before: IntNormState, after: IntNormState, r_raw, r_int, gamma_int: float) -> dict:
    """Per-update statistics of the intrinsic rewards of one (T, E) rollout, for diagnosis (logged by
    :func:`make_init_update`): mean, std and max of the raw (``r_int_raw_*``) and normalised (``r_int_*``)
    rewards; ``int_norm_scale``, the divisor the normaliser used (sqrt of its running variance after this
    rollout; 1 with ``int_norm="none"``, whose moments never move); ``int_return_mean``, ``int_return_std``: the
    moments of this rollout's discounted intrinsic returns ``R_t = gamma_I R_{t-1} + r_t`` (the filter of
    :func:`normalise_intrinsic`, continued from ``before``). ``int_norm_scale / int_return_std`` far above 1 means
    the normaliser is held up by rewards of long ago (e.g. a first-step spike)."""

    def body(filt, r):
        filt = gamma_int * filt + r
        return filt, filt

    _, rets = jax.lax.scan(body, before.filt, r_raw)
    return {
        "r_int_raw_std": jnp.std(r_raw),
        "r_int_raw_max": jnp.max(r_raw),
        "r_int_std": jnp.std(r_int),
        "r_int_max": jnp.max(r_int),
        "int_norm_scale": jnp.sqrt(after.moments.var + 1e-8),
        "int_return_mean": jnp.mean(rets),
        "int_return_std": jnp.std(rets),
    }


# ----------------------------------------------------------------------------------------------
# Training loop


class Rollout(NamedTuple):
    """One rollout, every field (T, E, ...); what the bonuses see."""

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    v_ext: jax.Array
    v_int: jax.Array
    reward: jax.Array
    done: jax.Array
    first: jax.Array  # obs[t] is the first observation of an episode
    next_obs: jax.Array  # true next observation (terminal one at episode ends)
    next_state_id: jax.Array
    success: jax.Array


class Runner(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    first: jax.Array
    bonus_state: Any
    int_norm: IntNormState
    tracker: exploration.Tracker
    key: jax.Array
    update: jax.Array
    coverage: Any = ()  # exploration.EpisodeCoverage when the env has a `reachable` count, else ()


def learn(
    cfg: PPOConfig,
    net: nn.Module,
    tx: optax.GradientTransformation,
    params,
    opt_state,
    traj,
    r_int,
    last_v_ext,
    last_v_int,
    int_coef: float,
    int_weight: float,
    key,
):
    """One PPO update from a rollout: GAE for both reward streams, then ``update_epochs`` epochs of a
    ``lax.scan`` over ``num_minibatches`` shuffled minibatches (one Adam step each); both scans unrolled when
    ``cfg.unroll_learn``.

    ``traj``: anything with (T, E, ...) fields ``obs, action, logp, v_ext, v_int, reward, done``
    (:class:`Rollout`, or the Atari loop's namespace); ``r_int``: the normalised intrinsic rewards (T, E).
    The policy's advantage is ``ext_coef A_E + int_coef A_I`` (RND Sec. 2.3); the intrinsic stream
    ignores episode ends unless ``cfg.int_episodic``. Returns (params, opt_state, per-minibatch losses).
    """
    adv_e, ret_e = gae(traj.reward, traj.v_ext, traj.done, last_v_ext, cfg.gamma, cfg.gae_lambda)
    int_dones = traj.done if cfg.int_episodic else jnp.zeros_like(traj.done)
    adv_i, ret_i = gae(r_int, traj.v_int, int_dones, last_v_int, cfg.gamma_int, cfg.gae_lambda)
    batch = {
        "obs": traj.obs,
        "action": traj.action,
        "logp": traj.logp,
        "adv": cfg.ext_coef * adv_e + int_coef * adv_i,
        "v_ext": traj.v_ext,
        "v_int": traj.v_int,
        "ret_ext": ret_e,
        "ret_int": ret_i,
    }
    batch = jax.tree.map(lambda x: x.reshape((cfg.batch_size,) + x.shape[2:]), batch)

    def epoch(state, k):
        perm = jax.random.permutation(k, cfg.batch_size)
        mbs = jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_size) + x.shape[1:]), batch)

        def minibatch(state, mb):
            params, opt_state = state

            def loss_fn(p):
                logits, v_e, v_i = net.apply(p, mb["obs"])
                return ppo_loss(cfg, logits, v_e, v_i, mb, int_weight)

            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {"loss": loss, **aux}

        return scan(minibatch, state, mbs)

    scan = functools.partial(jax.lax.scan, unroll=True) if cfg.unroll_learn else jax.lax.scan
    (params, opt_state), losses = scan(epoch, (params, opt_state), jax.random.split(key, cfg.update_epochs))
    return params, opt_state, losses


def make_init_update(cfg: PPOConfig, env: Adapter, bonus=None):
    """The two pure pieces of a training run: ``init(key) -> runner`` and ``update(runner, _) -> (runner,
    metrics)``, one PPO update (a rollout of ``num_steps`` x ``num_envs``, the bonus, ``update_epochs`` epochs).
    :func:`make_train` scans ``update`` ``num_updates`` times; :func:`train_seeds` with a ``checkpoint_dir`` scans
    it in chunks and checkpoints between them. Every random draw comes from the runner's key, so any split of the
    updates into chunks gives the same run."""
    if not isinstance(env, Adapter):
        raise ParameterError(f"env must be a replicate.rl.envs.Adapter, got {type(env).__name__}")
    net = ActorCritic(env.n_actions, tuple(cfg.hidden), cfg.activation)
    num_updates = cfg.num_updates
    E, T = cfg.num_envs, cfg.num_steps
    int_coef = cfg.int_coef if bonus is not None else 0.0
    int_weight = 1.0 if bonus is not None else 0.0
    track = env.n_states is not None
    per_episode = track and env.reachable is not None  # per-episode coverage of the episode's own layout

    def lr_schedule(count):
        frac = 1.0 - (count // (cfg.num_minibatches * cfg.update_epochs)) / num_updates
        return cfg.learning_rate * frac

    tx = optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adam(lr_schedule if cfg.anneal_lr else cfg.learning_rate, eps=cfg.adam_eps),
    )

    def init(key):
        key, k_net, k_env, k_bonus = jax.random.split(key, 4)
        params = net.init(k_net, jnp.zeros((env.obs_dim,), jnp.float32))
        opt_state = tx.init(params)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, E))
        bonus_state = bonus.init(k_bonus, env) if bonus is not None else ()
        tracker = exploration.tracker_init(env.n_states, E, jax.vmap(env.state_id)(env_state) if track else None)
        coverage = (exploration.episode_coverage_init(env.n_states, jax.vmap(env.state_id)(env_state),
                                                      jax.vmap(env.reachable)(env_state)) if per_episode else ())
        runner = Runner(
            params,
            opt_state,
            env_state,
            obs,
            jnp.ones((E,), bool),
            bonus_state,
            int_norm_init(E),
            tracker,
            key,
            jnp.zeros((), jnp.int32),
            coverage,
        )
        return runner

    def env_step(carry, _):
        params, env_state, obs, first, tracker, coverage, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        logits, v_ext, v_int = net.apply(params, obs)
        action = jax.random.categorical(k_act, logits)
        logp, entropy = categorical_logp_entropy(logits, action)
        res = jax.vmap(env.step)(jax.random.split(k_step, E), env_state, action)
        tracker, stats = exploration.tracker_step(
            tracker, res.reward, res.done, res.success, res.next_state_id, track
        )
        if per_episode:
            coverage, cov_sum = exploration.episode_coverage_step(
                coverage, res.next_state_id, res.done, jax.vmap(env.state_id)(res.env_state),
                jax.vmap(env.reachable)(res.env_state))
        else:
            cov_sum = jnp.zeros((), jnp.float32)
        tr = Rollout(
            obs,
            action,
            logp,
            v_ext,
            v_int,
            res.reward,
            res.done,
            first,
            res.next_obs,
            res.next_state_id,
            res.success,
        )
        return (params, res.env_state, res.obs, res.done, tracker, coverage, key), (tr, stats, entropy, cov_sum)

    def update(runner: Runner, _):
        carry = (runner.params, runner.env_state, runner.obs, runner.first, runner.tracker, runner.coverage,
                 runner.key)
        (params, env_state, obs, first, tracker, coverage, key), (traj, stats, entropy, cov_sum) = jax.lax.scan(
            env_step, carry, None, T)
        key, k_bonus, k_perm = jax.random.split(key, 3)
        _, last_v_ext, last_v_int = net.apply(params, obs)

        if bonus is not None:
            bonus_state, r_raw, binfo = bonus.intrinsic(runner.bonus_state, traj, k_bonus)
            int_norm, r_int = normalise_intrinsic(runner.int_norm, r_raw, cfg.gamma_int, cfg.int_norm)
        else:
            bonus_state, binfo, int_norm = runner.bonus_state, {}, runner.int_norm
            r_raw = r_int = jnp.zeros_like(traj.reward)

        params, opt_state, losses = learn(
            cfg,
            net,
            tx,
            params,
            runner.opt_state,
            traj,
            r_int,
            last_v_ext,
            last_v_int,
            int_coef,
            int_weight,
            k_perm,
        )
        metrics = {
            "env_steps": (runner.update + 1) * cfg.batch_size,
            "episodes": tracker.episodes,
            "first_success": tracker.first_success,
            "successes": tracker.successes,
            "distinct_states": jnp.sum(tracker.visited),
            "return_sum": jnp.sum(stats.return_sum),
            "episodes_ended": jnp.sum(stats.ended),
            "episode_coverage_sum": jnp.sum(cov_sum),
            "r_int_raw": jnp.mean(r_raw),
            "r_int": jnp.mean(r_int),
            **intrinsic_stats(runner.int_norm, int_norm, r_raw, r_int, cfg.gamma_int),
            "policy_entropy": jnp.mean(entropy),
            **{k: jnp.mean(v) for k, v in losses.items()},
            **binfo,
        }
        new = Runner(
            params, opt_state, env_state, obs, first, bonus_state, int_norm, tracker, key, runner.update + 1, coverage
        )
        return new, metrics

    return init, update


def make_train(cfg: PPOConfig, env: Adapter, bonus=None):
    """``train(key) -> (runner, metrics)``: pure, jittable, vmappable over keys.

    ``bonus``: ``None`` (no intrinsic reward) or any object with ``init(key, env) -> state`` and
    ``intrinsic(state, rollout, key) -> (state, r_int, info)`` (e.g. :class:`replicate.recode.bonus.Bonus`).
    ``metrics``: dict of (num_updates,) arrays: ``env_steps``, ``episodes``, ``first_success``,
    ``successes``, ``distinct_states``, ``return_sum``/``episodes_ended`` (of the update),
    ``episode_coverage_sum`` (summed per-episode coverage of the episodes ended in the update, when the env has a
    ``reachable`` count; else 0), ``r_int_raw``/``r_int`` (means) and :func:`intrinsic_stats`,
    ``policy_entropy`` (mean entropy of the acting policy over the rollout), losses.
    """
    init, update = make_init_update(cfg, env, bonus)

    def train(key):
        return jax.lax.scan(update, init(key), None, cfg.num_updates)

    return train


def train_seeds(cfg: PPOConfig, env: Adapter, bonus, keys, *, batch: str = "map",
                checkpoint_dir: str | os.PathLike | None = None, chunk_updates: int = 0,
                every_s: float = 600.0, on_chunk: Callable[[int, int], None] | None = None):
    """Run ``make_train`` for a (S, 2) stack of keys under one ``jit``; returns (runner, NumPy metrics (S, U)).

    ``batch="map"`` runs the seeds one after another inside the compiled program (``lax.map``);
    ``"vmap"`` batches them. On XLA:CPU the vmapped RND update hit a pathologically slow path
    (minutes instead of a second for a 2-seed DeepSea run), and with few cores batching gains little,
    so ``map`` is the default; on an accelerator ``vmap`` is the natural choice.

    **Resumable runs.** With ``checkpoint_dir`` the ``num_updates`` updates run in jitted chunks of about
    ``chunk_updates`` (default: a tenth of the run) under :func:`replicate.resumable.run_chunks`, which checkpoints the
    runners and the metrics so far with orbax at most every ``every_s`` seconds; a re-run after an interruption
    resumes from the last checkpoint and returns the same result as an uninterrupted run (the chunks replay the same
    updates: every draw comes from the runner's key). ``on_chunk(done, total)`` is called after every chunk with the
    number of updates done (progress; an exception raised there interrupts the run).
    """
    keys = jnp.asarray(keys)
    if keys.ndim != 2:
        raise ParameterError(f"keys must be a (seeds, 2) stack (replicate.rng.seed_keys), got shape {keys.shape}")
    if batch not in ("map", "vmap"):
        raise ParameterError(f"batch={batch!r}; choose 'map' or 'vmap'")
    if chunk_updates < 0:
        raise ParameterError(f"chunk_updates={chunk_updates} must be >= 0 (0: a tenth of the run)")
    over_seeds = jax.vmap if batch == "vmap" else (lambda f: lambda xs: jax.lax.map(f, xs))
    if checkpoint_dir is None:
        runner, metrics = jax.jit(over_seeds(make_train(cfg, env, bonus)))(keys)
        return runner, jax.tree.map(np.asarray, metrics)
    return _train_seeds_chunked(cfg, env, bonus, keys, over_seeds, checkpoint_dir, chunk_updates, every_s, on_chunk)


def chunk_lengths(num_updates: int, chunk_updates: int = 0) -> list[int]:
    """Split ``num_updates`` into chunks of about ``chunk_updates`` (0: ten chunks), at most two distinct lengths
    (so at most two compilations)."""
    target = chunk_updates or max(1, -(-num_updates // 10))
    n_chunks = max(1, -(-num_updates // target))
    return [len(part) for part in np.array_split(np.arange(num_updates), n_chunks)]


def _train_seeds_chunked(cfg, env, bonus, keys, over_seeds, checkpoint_dir, chunk_updates, every_s, on_chunk):
    init, update = make_init_update(cfg, env, bonus)
    lengths = chunk_lengths(cfg.num_updates, chunk_updates)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()

    def make_run(n):
        return jax.jit(over_seeds(lambda runner: jax.lax.scan(update, runner, None, n)))

    runs = {n: make_run(n) for n in sorted(set(lengths))}
    runners = jax.jit(over_seeds(init))(keys)
    # the metrics so far live in the checkpointed state: (S, U) buffers filled chunk by chunk
    shapes = jax.eval_shape(runs[lengths[0]], runners)[1]
    buffers = {k: jnp.zeros((v.shape[0], cfg.num_updates) + v.shape[2:], v.dtype) for k, v in shapes.items()}

    def chunk(state, i):
        runners, buf = state
        runners, m = runs[lengths[i]](runners)
        buf = {k: jax.lax.dynamic_update_slice_in_dim(buf[k], m[k], starts[i], axis=1) for k in buf}
        jax.block_until_ready(runners)
        if on_chunk is not None:
            on_chunk(starts[i] + lengths[i], cfg.num_updates)
        return runners, buf

    runners, metrics = resumable.run_chunks((runners, buffers), chunk, len(lengths), checkpoint_dir, every_s=every_s)
    return runners, jax.tree.map(np.asarray, metrics)
