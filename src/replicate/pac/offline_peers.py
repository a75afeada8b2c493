"""Offline-RL peers for PAC: TD3+BC and IQL, trained on the same offline datasets (issue 13).

Notebook 31 asks whether PAC beats behaviour cloning (BC). Two well-known offline-RL methods, run on the
same data and evaluated the same way (normalised return, expert = 1, random = 0), tell a reader whether
the data can show an advantage of value-based learning over BC at all:

* **TD3+BC** (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning",
  arXiv 2106.06860): TD3 (Fujimoto et al. 2018) with twin critics, target-policy smoothing and a delayed
  actor whose loss gains a behaviour-cloning term::

      L_pi = - lambda * mean_s Q1(s, pi(s)) + mean_{s,a} (pi(s) - a)^2,   lambda = alpha / mean_s |Q1(s, pi(s))|

  (no gradient through ``lambda``), observations standardised with the dataset's mean and std.
* **IQL** (Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with Implicit Q-Learning",
  arXiv 2110.06169): a state value ``V`` fitted by expectile regression (``tau``) to the minimum of the
  twin target Qs, Qs regressed on ``r + gamma d V(s')``, and the policy extracted by advantage-weighted
  regression (AWR) with weights ``min(exp(beta (Q'(s, a) - V(s))), 100)`` on the dataset's actions.

The defaults of :class:`TD3BCConfig` and :class:`IQLConfig` are the papers' D4RL-locomotion settings
(TD3+BC: Sec. 5 and App. C, and the authors' code; IQL: App. B, Table 4 and the authors' code); the
sizes of the runs (``num_updates``, ``batch_size``, ``hidden``) are the first thing a CPU notebook
lowers. Differences from the authors' code (ours, stated): flax's default initialisation (LeCun-normal
kernels, zero biases) instead of PyTorch's; in the multi-task mix the padded action dimensions are held
at zero by an action mask, IQL's log-likelihood sums over the real dimensions only and TD3+BC's BC term
averages each row's squared error over its own real dimensions (:func:`bc_mse`), so that every task of
the mix sees the single-task loss.

PureJaxRL style: the public core is pure and jit-able (:func:`init`, :func:`update`, :func:`act` and the
losses), :func:`make_train` returns a jitted ``train(key)`` running ``num_updates`` minibatch updates in
``lax.scan`` (minibatches drawn with ``jax.random`` inside the scan; a batch of keys trains several seeds
in one ``vmap``), and the Python boundary (:func:`check_data`, the configs' ``__post_init__``) validates.

Data: :func:`from_merged` turns the multi-task mix of :func:`replicate.pac.offline_data.load_mixed`
(observations already standardised per task, as TD3+BC prescribes) into the arrays the peers train on,
appending the task one-hot (:func:`with_task_onehot`) to the observations; :func:`evaluate` rolls the
deterministic policy out in every task's simulator exactly as :func:`replicate.pac.train.evaluate` does
for PAC and BC.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate.pac import train
from replicate.params import ParameterError

Array = jax.Array

#: Keys of the training arrays (:func:`check_data`); ``action_mask`` is optional.
DATA_KEYS = ("obs", "action", "reward", "discount", "next_obs")
#: Bounds of IQL's state-independent log standard deviation (the authors' ``LOG_STD_MIN/MAX``).
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0
#: Added to the dataset's observation std before dividing (TD3+BC's ``normalize_states`` eps).
OBS_STD_EPS = 1e-3


# ----------------------------------------------------------------------------------------------
# Configs.


def _check_common(name: str, cfg) -> None:
    if not cfg.hidden or any(int(h) < 1 for h in cfg.hidden):
        raise ParameterError(f"{name}.hidden={cfg.hidden} must be a non-empty tuple of widths >= 1")
    if not 0 <= cfg.discount < 1:
        raise ParameterError(f"{name}.discount={cfg.discount} must be in [0, 1)")
    if not 0 < cfg.tau <= 1:
        raise ParameterError(f"{name}.tau={cfg.tau} (Polyak rate of the targets) must be in (0, 1]")
    if cfg.batch_size < 1 or cfg.num_updates < 1:
        raise ParameterError(f"{name}: batch_size={cfg.batch_size} and num_updates={cfg.num_updates} must be >= 1")


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC hyper-parameters; defaults are Fujimoto & Gu (2021)'s D4RL-locomotion settings.

    Attributes:
        alpha: BC trade-off, ``lambda = alpha / mean|Q|`` (paper Sec. 5, alpha = 2.5; ``alpha = 0`` is
            pure BC).
        policy_noise, noise_clip: target-policy smoothing noise std and clip (TD3: 0.2, 0.5, in units of
            the action bound 1).
        policy_delay: one actor (and target) update per ``policy_delay`` critic updates (TD3: 2).
        discount, tau: 0.99 and Polyak rate 0.005 (TD3).
        hidden: actor and critic MLP widths (256, 256); learning_rate: Adam 3e-4 for actor and critics.
        batch_size: 256; num_updates: 1e6 gradient steps (the paper's D4RL runs).
    """

    alpha: float = 2.5
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    discount: float = 0.99
    tau: float = 0.005
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    batch_size: int = 256
    num_updates: int = 1_000_000

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check_common("TD3BCConfig", self)
        if self.alpha < 0:
            raise ParameterError(f"TD3BCConfig.alpha={self.alpha} must be >= 0 (0 is pure BC; the paper uses 2.5)")
        if self.policy_noise < 0 or self.noise_clip < 0:
            raise ParameterError(
                f"TD3BCConfig: policy_noise={self.policy_noise} and noise_clip={self.noise_clip} must be >= 0"
            )
        if self.policy_delay < 1:
            raise ParameterError(f"TD3BCConfig.policy_delay={self.policy_delay} must be >= 1 (TD3 uses 2)")
        if self.learning_rate <= 0:
            raise ParameterError(f"TD3BCConfig.learning_rate={self.learning_rate} must be > 0")


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """IQL hyper-parameters; defaults are Kostrikov et al. (2021)'s D4RL-locomotion settings (App. B).

    Attributes:
        expectile: ``tau`` of the expectile regression of V on Q (0.7 for locomotion; 0.5 is the mean).
        beta: inverse temperature of the AWR weights ``exp(beta (Q - V))`` (3.0 for locomotion).
        max_weight: the weights are clipped at 100 (the authors' code).
        discount, tau: 0.99 and Polyak rate 0.005 of the target Qs.
        hidden: widths of the policy, value and Q MLPs (256, 256).
        actor_lr, value_lr, critic_lr: Adam 3e-4 each.
        actor_lr_schedule: ``"cosine"`` decays the actor's learning rate to 0 over ``num_updates`` (the
            authors' code for D4RL), ``"constant"`` keeps it. Default: the paper's cosine.
        batch_size: 256; num_updates: 1e6 gradient steps.

    The policy is a Gaussian with a tanh-squashed mean and a state-independent log-std (initialised at
    0, clipped to [:data:`LOG_STD_MIN`, :data:`LOG_STD_MAX`]), as in the authors' code for locomotion;
    the deterministic action is the mean. The paper also rescales locomotion rewards by
    ``1000 / (max return - min return)`` over the dataset's episodes (:func:`iql_reward_scale`).
    """

    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    discount: float = 0.99
    tau: float = 0.005
    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    value_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_lr_schedule: str = "cosine"
    batch_size: int = 256
    num_updates: int = 1_000_000

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check_common("IQLConfig", self)
        if not 0 < self.expectile < 1:
            raise ParameterError(f"IQLConfig.expectile={self.expectile} must be in (0, 1) (0.7 for locomotion)")
        if self.beta < 0 or self.max_weight <= 0:
            raise ParameterError(f"IQLConfig: beta={self.beta} must be >= 0 and max_weight={self.max_weight} > 0")
        if min(self.actor_lr, self.value_lr, self.critic_lr) <= 0:
            raise ParameterError("IQLConfig: actor_lr, value_lr and critic_lr must be > 0")
        if self.actor_lr_schedule not in ("cosine", "constant"):
            raise ParameterError(f"IQLConfig.actor_lr_schedule={self.actor_lr_schedule!r}: use 'cosine' or 'constant'")


PeerConfig = TD3BCConfig | IQLConfig


def method_name(cfg: PeerConfig) -> str:
    """``"TD3+BC"`` or ``"IQL"`` (the label notebooks use for rows and bars)."""
    return "TD3+BC" if isinstance(cfg, TD3BCConfig) else "IQL"


# ----------------------------------------------------------------------------------------------
# Networks.


class MLP(nn.Module):
    """ReLU MLP: ``hidden`` widths, then a linear layer with ``out`` units (no output activation)."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


def mlp_init(hidden: Sequence[int], in_dim: int, out: int, key: Array):
    """Parameters of :class:`MLP` for inputs of width ``in_dim``."""
    return MLP(tuple(hidden), out).init(key, jnp.zeros((1, in_dim)))


def mlp_apply(hidden: Sequence[int], params, x: Array, out: int) -> Array:
    return MLP(tuple(hidden), out).apply(params, x)


def critic_values(hidden: Sequence[int], params, obs: Array, action: Array) -> Array:
    """Q-values of stacked critics: ``params`` has a leading axis (one entry per critic); returns
    ``(num_critics, batch)``."""
    x = jnp.concatenate([obs, action], -1)
    return jax.vmap(lambda p: mlp_apply(hidden, p, x, 1)[..., 0])(params)


def twin_critic_init(hidden: Sequence[int], obs_dim: int, act_dim: int, key: Array):
    """Two independently initialised critics, stacked on a leading axis."""
    return jax.vmap(lambda k: mlp_init(hidden, obs_dim + act_dim, 1, k))(jax.random.split(key))


def masked(action: Array, mask: Array | None) -> Array:
    return action if mask is None else action * mask


def td3bc_policy(cfg: TD3BCConfig, params, obs: Array, mask: Array | None = None) -> Array:
    """TD3+BC's deterministic actor: ``tanh(MLP(obs))`` (action bound 1), padded dimensions zeroed."""
    act_dim = params["params"][f"Dense_{len(cfg.hidden)}"]["bias"].shape[-1]
    return masked(jnp.tanh(mlp_apply(cfg.hidden, params, obs, act_dim)), mask)


def iql_policy(cfg: IQLConfig, params, obs: Array) -> tuple[Array, Array]:
    """IQL's Gaussian policy: ``(mean, log_std)``; mean ``tanh(MLP(obs))``, log-std a clipped parameter."""
    act_dim = params["log_std"].shape[-1]
    mean = jnp.tanh(mlp_apply(cfg.hidden, params["mean"], obs, act_dim))
    log_std = jnp.clip(params["log_std"], LOG_STD_MIN, LOG_STD_MAX)
    return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_log_prob(mean: Array, log_std: Array, action: Array, mask: Array | None = None) -> Array:
    """Log-density of a diagonal Gaussian, summed over the (unmasked) action dimensions: ``(batch,)``."""
    per_dim = -0.5 * ((action - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.sum(masked(per_dim, mask), -1)


def act(cfg: PeerConfig, params, obs: Array, mask: Array | None = None) -> Array:
    """Deterministic evaluation policy in [-1, 1]: TD3+BC's actor, IQL's Gaussian mean.

    ``params`` is the state's ``actor`` entry; ``obs`` includes the task one-hot (:func:`with_task_onehot`).
    """
    if isinstance(cfg, TD3BCConfig):
        return td3bc_policy(cfg, params, obs, mask)
    return masked(jnp.clip(iql_policy(cfg, params, obs)[0], -1.0, 1.0), mask)


# ----------------------------------------------------------------------------------------------
# Losses (pure; the tests transcribe each in NumPy).


def polyak(online, target, tau: float):
    """``tau * online + (1 - tau) * target``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def td3bc_target(cfg: TD3BCConfig, critic_target, actor_target, batch: Mapping[str, Array], noise: Array) -> Array:
    """TD target ``r + gamma d min_i Q'_i(s', clip(pi'(s') + clip(sigma eps, -c, c), -1, 1))``.

    ``noise`` is standard normal, shaped like the actions (drawn by the caller, so the tests can replay it).
    """
    mask = batch.get("action_mask")
    smooth = jnp.clip(cfg.policy_noise * noise, -cfg.noise_clip, cfg.noise_clip)
    next_action = masked(jnp.clip(td3bc_policy(cfg, actor_target, batch["next_obs"]) + smooth, -1.0, 1.0), mask)
    q_next = critic_values(cfg.hidden, critic_target, batch["next_obs"], next_action).min(0)
    return jax.lax.stop_gradient(batch["reward"] + cfg.discount * batch["discount"] * q_next)


def td3bc_critic_loss(
    cfg: TD3BCConfig, critic, critic_target, actor_target, batch: Mapping[str, Array], noise: Array
) -> tuple[Array, dict[str, Array]]:
    """Sum over the twin critics of the mean squared TD error (TD3's ``mse(Q1, y) + mse(Q2, y)``)."""
    y = td3bc_target(cfg, critic_target, actor_target, batch, noise)
    q = critic_values(cfg.hidden, critic, batch["obs"], batch["action"])
    loss = jnp.mean((q - y[None]) ** 2, axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": y.mean()}


def bc_mse(pi: Array, action: Array, mask: Array | None = None) -> Array:
    """TD3+BC's behaviour-cloning term: the mean squared error over the batch and the action dimensions.

    With an action ``mask`` (multi-task mix, padded dimensions 0) each row's error is averaged over its own
    ``mask.sum(-1)`` real dimensions, so every task sees the term of a single-task run (the paper's
    ``mse(pi(s), a)`` over its action space). Averaging over the padded width instead would weaken the BC
    term of a task with ``k`` of ``A`` real dimensions by ``k / A`` against the Q term.
    """
    sq = (pi - action) ** 2
    if mask is None:
        return jnp.mean(sq)
    return jnp.mean(jnp.sum(sq * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0))


def td3bc_actor_objective(q: Array, pi: Array, action: Array, alpha: float, mask: Array | None = None) -> Array:
    """``-lambda mean(q) + bc_mse(pi, a)`` with ``lambda = alpha / mean|q|`` held constant (stop-gradient)."""
    lam = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))
    return -lam * jnp.mean(q) + bc_mse(pi, action, mask)


def td3bc_actor_loss(cfg: TD3BCConfig, actor, critic, batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """TD3+BC's actor loss (paper Eq. 3 with the normaliser of Sec. 5), Q from the first critic; the BC term
    per row over its real action dimensions (:func:`bc_mse`)."""
    mask = batch.get("action_mask")
    pi = td3bc_policy(cfg, actor, batch["obs"], mask)
    q1 = critic_values(cfg.hidden, critic, batch["obs"], pi)[0]
    loss = td3bc_actor_objective(q1, pi, batch["action"], cfg.alpha, mask)
    return loss, {"actor_loss": loss, "bc_mse": bc_mse(pi, batch["action"], mask)}


def expectile_loss(diff: Array, expectile: float) -> Array:
    """Asymmetric squared loss ``|tau - 1(diff < 0)| diff^2``, elementwise (IQL Eq. 3, ``diff = Q - V``)."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def iql_value_loss(cfg: IQLConfig, value, q_target: Array, obs: Array) -> tuple[Array, dict[str, Array]]:
    """Expectile regression of ``V(s)`` on ``q_target = min_i Q'_i(s, a)`` (mean over the batch)."""
    v = mlp_apply(cfg.hidden, value, obs, 1)[..., 0]
    loss = expectile_loss(q_target - v, cfg.expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def iql_q_loss(cfg: IQLConfig, critic, value, batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """Twin-Q regression on ``r + gamma d V(s')`` (IQL Eq. 4; the authors' ``(q1 - y)^2 + (q2 - y)^2`` mean)."""
    v_next = mlp_apply(cfg.hidden, value, batch["next_obs"], 1)[..., 0]
    y = jax.lax.stop_gradient(batch["reward"] + cfg.discount * batch["discount"] * v_next)
    q = critic_values(cfg.hidden, critic, batch["obs"], batch["action"])
    loss = jnp.mean(jnp.sum((q - y[None]) ** 2, 0))
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def awr_weights(q: Array, v: Array, beta: float, max_weight: float) -> Array:
    """``min(exp(beta (q - v)), max_weight)``, no gradient."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(beta * (q - v)), max_weight))


def iql_actor_loss(
    cfg: IQLConfig, actor, value, q_target: Array, batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
    """Advantage-weighted regression: ``-mean(w log pi(a|s))``, ``w = min(exp(beta (Q'(s,a) - V(s))), 100)``."""
    v = mlp_apply(cfg.hidden, value, batch["obs"], 1)[..., 0]
    w = awr_weights(q_target, v, cfg.beta, cfg.max_weight)
    mean, log_std = iql_policy(cfg, actor, batch["obs"])
    logp = gaussian_log_prob(mean, log_std, batch["action"], batch.get("action_mask"))
    loss = -jnp.mean(w * logp)
    return loss, {"actor_loss": loss, "awr_weight_mean": w.mean(), "advantage_mean": (q_target - v).mean()}


# ----------------------------------------------------------------------------------------------
# State, init, update.


class TD3BCState(NamedTuple):
    actor: Any
    critic: Any  # twin critics stacked on a leading axis
    actor_target: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    step: Array


class IQLState(NamedTuple):
    actor: Any  # {"mean": MLP params, "log_std": (A,)}
    critic: Any  # twin critics stacked on a leading axis
    critic_target: Any
    value: Any
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    step: Array


PeerState = TD3BCState | IQLState


def optimizers(cfg: PeerConfig) -> dict[str, optax.GradientTransformation]:
    """Adam for each network; IQL's actor with the cosine-decayed rate when ``actor_lr_schedule == "cosine"``."""
    if isinstance(cfg, TD3BCConfig):
        return {"actor": optax.adam(cfg.learning_rate), "critic": optax.adam(cfg.learning_rate)}
    actor_lr = (
        optax.cosine_decay_schedule(cfg.actor_lr, cfg.num_updates)
        if cfg.actor_lr_schedule == "cosine"
        else cfg.actor_lr
    )
    return {"actor": optax.adam(actor_lr), "critic": optax.adam(cfg.critic_lr), "value": optax.adam(cfg.value_lr)}


def init(cfg: PeerConfig, key: Array, obs_dim: int, act_dim: int) -> PeerState:
    """Fresh networks, targets (copies of the online networks) and optimiser states.

    ``obs_dim`` counts the task one-hot when the data carry one (:func:`from_merged`).
    """
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    opt = optimizers(cfg)
    critic = twin_critic_init(cfg.hidden, obs_dim, act_dim, k_critic)
    if isinstance(cfg, TD3BCConfig):
        actor = mlp_init(cfg.hidden, obs_dim, act_dim, k_actor)
        return TD3BCState(
            actor, critic, actor, critic, opt["actor"].init(actor), opt["critic"].init(critic), jnp.int32(0)
        )
    actor = {"mean": mlp_init(cfg.hidden, obs_dim, act_dim, k_actor), "log_std": jnp.zeros((act_dim,), jnp.float32)}
    value = mlp_init(cfg.hidden, obs_dim, 1, k_value)
    return IQLState(
        actor,
        critic,
        critic,
        value,
        opt["actor"].init(actor),
        opt["critic"].init(critic),
        opt["value"].init(value),
        jnp.int32(0),
    )


def _apply(opt: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def td3bc_update(
    cfg: TD3BCConfig, state: TD3BCState, batch: Mapping[str, Array], key: Array
) -> tuple[TD3BCState, dict]:
    """One TD3+BC step: critic update every call; actor and both targets every ``policy_delay`` calls.

    On steps without an actor update ``actor_loss`` is the loss at the current actor (forward only).
    """
    opt = optimizers(cfg)
    noise = jax.random.normal(key, batch["action"].shape)
    (_, c_aux), c_grads = jax.value_and_grad(td3bc_critic_loss, argnums=1, has_aux=True)(
        cfg, state.critic, state.critic_target, state.actor_target, batch, noise
    )
    critic, critic_opt = _apply(opt["critic"], c_grads, state.critic_opt, state.critic)
    step = state.step + 1

    def actor_step(_):
        (_, a_aux), a_grads = jax.value_and_grad(td3bc_actor_loss, argnums=1, has_aux=True)(
            cfg, state.actor, critic, batch
        )
        actor, actor_opt = _apply(opt["actor"], a_grads, state.actor_opt, state.actor)
        return (
            actor,
            actor_opt,
            polyak(actor, state.actor_target, cfg.tau),
            polyak(critic, state.critic_target, cfg.tau),
            a_aux,
        )

    def skip(_):
        _, a_aux = td3bc_actor_loss(cfg, state.actor, critic, batch)
        return state.actor, state.actor_opt, state.actor_target, state.critic_target, a_aux

    actor, actor_opt, actor_target, critic_target, a_aux = jax.lax.cond(
        step % cfg.policy_delay == 0, actor_step, skip, None
    )
    new = TD3BCState(actor, critic, actor_target, critic_target, actor_opt, critic_opt, step)
    return new, {**c_aux, **a_aux}


def iql_update(cfg: IQLConfig, state: IQLState, batch: Mapping[str, Array], key: Array) -> tuple[IQLState, dict]:
    """One IQL step in the authors' order: V on the target Qs, the actor by AWR with the new V and the
    target Qs, the Qs on ``r + gamma d V_new(s')``, then the Polyak update of the target Qs.

    ``key`` is unused (no dropout in the locomotion settings); it keeps :func:`update`'s signature.
    """
    del key
    opt = optimizers(cfg)
    q_target = jax.lax.stop_gradient(
        critic_values(cfg.hidden, state.critic_target, batch["obs"], batch["action"]).min(0)
    )
    (_, v_aux), v_grads = jax.value_and_grad(iql_value_loss, argnums=1, has_aux=True)(
        cfg, state.value, q_target, batch["obs"]
    )
    value, value_opt = _apply(opt["value"], v_grads, state.value_opt, state.value)
    (_, a_aux), a_grads = jax.value_and_grad(iql_actor_loss, argnums=1, has_aux=True)(
        cfg, state.actor, value, q_target, batch
    )
    actor, actor_opt = _apply(opt["actor"], a_grads, state.actor_opt, state.actor)
    (_, q_aux), q_grads = jax.value_and_grad(iql_q_loss, argnums=1, has_aux=True)(cfg, state.critic, value, batch)
    critic, critic_opt = _apply(opt["critic"], q_grads, state.critic_opt, state.critic)
    new = IQLState(
        actor,
        critic,
        polyak(critic, state.critic_target, cfg.tau),
        value,
        actor_opt,
        critic_opt,
        value_opt,
        state.step + 1,
    )
    return new, {**v_aux, **a_aux, **q_aux}


def update(cfg: PeerConfig, state: PeerState, batch: Mapping[str, Array], key: Array) -> tuple[PeerState, dict]:
    """One gradient step of the method ``cfg`` names (:func:`td3bc_update` or :func:`iql_update`)."""
    if isinstance(cfg, TD3BCConfig):
        return td3bc_update(cfg, state, batch, key)
    return iql_update(cfg, state, batch, key)


# ----------------------------------------------------------------------------------------------
# Training loop.


def check_data(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Validate the training arrays (boundary check, outside jit) and return them as float32 NumPy arrays.

    Needs ``obs (N, O)``, ``next_obs (N, O)``, ``action (N, A)`` in [-1, 1], ``reward (N,)``,
    ``discount (N,)`` in [0, 1]; optional ``action_mask (N, A)``.
    """
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise ParameterError(f"offline-peer data lacks {missing}; build it with offline_peers.from_merged")
    out = {k: np.asarray(data[k], np.float32) for k in DATA_KEYS + (("action_mask",) if "action_mask" in data else ())}
    n = len(out["reward"])
    if n == 0:
        raise ParameterError("offline-peer data are empty")
    for k, ndim in (("obs", 2), ("next_obs", 2), ("action", 2), ("reward", 1), ("discount", 1), ("action_mask", 2)):
        if k in out and (out[k].ndim != ndim or out[k].shape[0] != n):
            raise ParameterError(f"offline-peer data: {k} has shape {out[k].shape}, expected {ndim} dims and {n} rows")
        if k in out and not np.all(np.isfinite(out[k])):
            raise ParameterError(f"offline-peer data: {k} contains NaN or inf")
    if out["next_obs"].shape != out["obs"].shape:
        raise ParameterError(f"next_obs {out['next_obs'].shape} and obs {out['obs'].shape} differ")
    if "action_mask" in out and out["action_mask"].shape != out["action"].shape:
        raise ParameterError(f"action_mask {out['action_mask'].shape} and action {out['action'].shape} differ")
    if np.abs(out["action"]).max() > 1 + 1e-6:
        raise ParameterError("offline-peer data: actions must lie in [-1, 1]")
    if out["discount"].min() < 0 or out["discount"].max() > 1:
        raise ParameterError("offline-peer data: discounts must lie in [0, 1]")
    return out


def make_update_chunk(cfg: PeerConfig, num_updates: int) -> Callable:
    """A jitted ``(state, data, key) -> (state, metrics)`` running ``num_updates`` updates in ``lax.scan``,
    each on a minibatch of ``cfg.batch_size`` rows drawn uniformly (with replacement) from ``data``.

    ``metrics`` holds one value per update for every scalar of the losses. Use it to train in chunks
    with evaluations in between; :func:`make_train` runs all ``cfg.num_updates`` at once.
    """

    def one(state, key, data):
        k_idx, k_upd = jax.random.split(key)
        idx = jax.random.randint(k_idx, (cfg.batch_size,), 0, data["reward"].shape[0])
        return update(cfg, state, {k: v[idx] for k, v in data.items()}, k_upd)

    @jax.jit
    def chunk(state, data, key):
        return jax.lax.scan(lambda s, k: one(s, k, data), state, jax.random.split(key, num_updates))

    return chunk


def make_train(cfg: PeerConfig, data: Mapping[str, Any]) -> Callable[[Array], tuple[PeerState, dict]]:
    """PureJaxRL's ``make_train``: validate ``data`` once and return ``train(key) -> (state, metrics)``.

    ``train`` initialises fresh networks from ``key`` and runs ``cfg.num_updates`` minibatch updates in one
    jitted ``lax.scan``. A batch of keys ``(S, 2)`` trains ``S`` seeds at once (``vmap``; every output
    then has a leading seed axis).
    """
    arrays = {k: jnp.asarray(v) for k, v in check_data(data).items()}
    obs_dim, act_dim = arrays["obs"].shape[1], arrays["action"].shape[1]
    chunk = make_update_chunk(cfg, cfg.num_updates)

    def train_one(key, data):
        k_init, k_run = jax.random.split(key)
        return chunk(init(cfg, k_init, obs_dim, act_dim), data, k_run)

    single = jax.jit(train_one)
    many = jax.jit(jax.vmap(train_one, in_axes=(0, None)))

    def train(key: Array):
        key = jnp.asarray(key)
        return (many if key.ndim == 2 else single)(key, arrays)

    return train


def update_flops(cfg: PeerConfig, obs_dim: int, act_dim: int) -> float:
    """Floating-point operations of one update, averaged over updates (our accounting: 2 per multiply-add
    of every dense layer, a backward pass costs twice its forward; elementwise work and the optimiser are
    left out).

    Per row of the minibatch, with ``f(net)`` the forward cost of a network: TD3+BC
    ``f(actor) + 2 f(Q) [target] + 6 f(Q) [twin critic fwd+bwd] + (3 f(actor) + 3 f(Q)) / policy_delay``;
    IQL ``2 f(Q) [target] + 3 f(V) + f(V) + 3 f(actor) + f(V) [next state] + 6 f(Q)``.
    """

    def fwd(in_dim: int, out: int) -> float:
        widths = (in_dim, *cfg.hidden, out)
        return float(sum(2 * a * b for a, b in zip(widths[:-1], widths[1:])))

    actor, q = fwd(obs_dim, act_dim), fwd(obs_dim + act_dim, 1)
    if isinstance(cfg, TD3BCConfig):
        per_row = actor + 8 * q + (3 * actor + 3 * q) / cfg.policy_delay
    else:
        per_row = 8 * q + 5 * fwd(obs_dim, 1) + 3 * actor
    return per_row * cfg.batch_size


# ----------------------------------------------------------------------------------------------
# Data: task one-hot, normalisation, the PAC multi-task mix.


def with_task_onehot(obs: Array | np.ndarray, task: Array | np.ndarray, num_tasks: int):
    """``[obs, one_hot(task, num_tasks)]`` along the last axis (the peers' multi-task input)."""
    xp = jnp if isinstance(obs, jax.Array) else np
    onehot = (xp.asarray(task)[..., None] == xp.arange(num_tasks)).astype(obs.dtype)
    return xp.concatenate([obs, onehot], -1)


def observation_stats(obs: np.ndarray, eps: float = OBS_STD_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Dataset mean and ``std + eps`` of the observations (TD3+BC's state normalisation, eps 1e-3)."""
    obs = np.asarray(obs, np.float64)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


def iql_reward_scale(episode_returns: np.ndarray) -> float:
    """IQL's locomotion reward scale ``1000 / (max return - min return)`` over the dataset's episodes."""
    span = float(np.max(episode_returns) - np.min(episode_returns))
    if span <= 0:
        raise ParameterError("iql_reward_scale: all episodes have the same return; scale the rewards by hand")
    return 1000.0 / span


def from_merged(merged: Mapping[str, np.ndarray], reward_scale: float | np.ndarray = 1.0) -> dict[str, np.ndarray]:
    """Training arrays from :func:`replicate.pac.offline_data.merge_tasks`'s multi-task mix.

    The observations there are already standardised per task with ``std + 1e-3`` (TD3+BC's rule) and
    padded; the task one-hot is appended; rewards are multiplied by ``reward_scale``: one factor, or one per task
    (indexed by the task id; IQL's per-task rescaling, :func:`iql_reward_scale`).
    """
    num_tasks = len(merged["obs_dim"])
    scale = np.asarray(reward_scale, np.float32)
    if scale.ndim == 1:
        if len(scale) != num_tasks:
            raise ParameterError(f"reward_scale has {len(scale)} entries; the data have {num_tasks} task ids")
        scale = scale[np.asarray(merged["task"])]
    return {
        "obs": with_task_onehot(np.asarray(merged["obs"], np.float32), merged["task"], num_tasks),
        "next_obs": with_task_onehot(np.asarray(merged["next_obs"], np.float32), merged["task"], num_tasks),
        "action": np.asarray(merged["action"], np.float32),
        "action_mask": np.asarray(merged["action_mask"], np.float32),
        "reward": np.asarray(merged["reward"], np.float32) * scale,
        "discount": np.asarray(merged["discount"], np.float32),
    }


@functools.lru_cache(maxsize=8)
def _policy_fn(cfg: PeerConfig):
    return jax.jit(lambda params, obs, mask: act(cfg, params, obs, mask))


def policy(cfg: PeerConfig, actor_params, num_tasks: int) -> train.Policy:
    """The deterministic policy (:func:`act`) as a :data:`replicate.pac.train.Policy` for
    :func:`replicate.pac.train.evaluate`: the task one-hot is appended to the observations, the action mask
    zeroes the padded dimensions."""
    fn = _policy_fn(cfg)
    return lambda obs, obs_mask, task, action_mask: fn(
        actor_params, with_task_onehot(obs, task, num_tasks), np.asarray(action_mask, np.float32)
    )


def evaluate(
    cfg: PeerConfig,
    actor_params,
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    episodes: int,
    seed: int,
    *,
    action_repeat: int,
) -> dict[str, dict[str, float]]:
    """:func:`replicate.pac.train.evaluate` (the evaluation of PAC and BC: same environment seeds, observation
    standardisation, padding and normalised return) of the deterministic policy :func:`policy`."""
    pol = policy(cfg, actor_params, len(merged["obs_dim"]))
    return train.evaluate(pol, merged, metas, episodes, seed, action_repeat=action_repeat)


def run(
    cfg: PeerConfig,
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    seed: int,
    *,
    eval_episodes: int,
    action_repeat: int,
    reward_scale: float | np.ndarray = 1.0,
    eval_every: int = 0,
    chunk: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    every_s: float = 600.0,
    stop: Callable | None = None,
) -> dict[str, Any]:
    """One run of a peer, the counterpart of :func:`replicate.pac.experiment.run`: fresh networks from ``seed``,
    ``cfg.num_updates`` minibatch updates on :func:`from_merged` ``(merged, reward_scale)`` (in jitted scans of
    ``chunk`` updates, default all at once), then the shared evaluation (:func:`replicate.pac.train.evaluate`,
    ``eval_episodes`` per task; none when 0). With ``eval_every > 0`` also after every ``eval_every`` updates
    (rounded up to a multiple of ``chunk``): the ``curve_eval*`` columns of :func:`replicate.pac.train.eval_curve`.
    The loop is :func:`replicate.pac.train.train_in_chunks` (with ``checkpoint_dir``: checkpointed at most every
    ``every_s`` seconds, resumable; ``stop`` may end it early at an evaluation).

    The row holds ``method``, ``seed``, ``steps``, ``train_seconds``, ``train_flops`` (:func:`update_flops` x
    updates), ``finite`` (all losses finite), ``critic_loss_end`` / ``actor_loss_end`` (mean of the last 10 %
    of updates) and the scores (:func:`replicate.pac.train.score_row`).
    """
    arrays = {k: jnp.asarray(v) for k, v in check_data(from_merged(merged, reward_scale)).items()}
    obs_dim, act_dim = arrays["obs"].shape[1], arrays["action"].shape[1]
    k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
    state = init(cfg, k_init, obs_dim, act_dim)
    total = cfg.num_updates

    def make_chunk(n: int):
        fn = make_update_chunk_cached(cfg, n)
        return lambda st, k: fn(st, arrays, k)

    def evaluate_actor(st) -> dict[str, dict[str, float]]:
        return evaluate(cfg, st.actor, merged, metas, eval_episodes, seed, action_repeat=action_repeat)

    state, metrics, seconds, curve = train.train_in_chunks(
        state, make_chunk, k_run, total, chunk=chunk, evaluate=evaluate_actor if eval_episodes > 0 else None,
        tasks=[m["task"] for m in metas], eval_every=eval_every, checkpoint_dir=checkpoint_dir, every_s=every_s,
        stop=stop)
    done = len(metrics["critic_loss"])
    tail = max(1, done // 10)
    row: dict[str, Any] = {
        "method": method_name(cfg), "seed": seed, "steps": done, "train_seconds": seconds,
        "train_flops": update_flops(cfg, obs_dim, act_dim) * done,
        "finite": bool(all(np.isfinite(v).all() for v in metrics.values())),
        "critic_loss_end": float(metrics["critic_loss"][-tail:].mean()),
        "actor_loss_end": float(metrics["actor_loss"][-tail:].mean()),
    }
    if curve:
        row.update(train.score_row(curve[-1][1]))
        if eval_every > 0:
            row.update(train.eval_curve(curve))
    return row


@functools.lru_cache(maxsize=16)
def make_update_chunk_cached(cfg: PeerConfig, num_updates: int) -> Callable:
    """:func:`make_update_chunk`, compiled once per ``(cfg, num_updates)``."""
    return make_update_chunk(cfg, num_updates)
