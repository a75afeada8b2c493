"""The offline actor-critic objective of PAC (Springenberg et al. 2024, arXiv 2402.05546; its method section
could not be read here).

Notation: ``D`` the offline data, ``pi`` the policy being trained, ``pi'`` / ``Q'`` the *target* network
(a periodically copied set of parameters), ``b`` the (unknown) behaviour policy that generated ``D``.

**Policy.** The paper starts from a KL-regularised policy-improvement problem whose solution is the
improved policy ``pi_imp(a|s) ∝ pi'(a|s) exp(Q(s,a)/eta)`` (MPO-style E-step, Abdolmaleki et al. 2018),
and projects onto the parametric policy a *mixture* of this improved policy and the data (secondary summaries;
the paper's own equation is unverified)::

    L_pi = E_{s~D}[ (1 - alpha) KL(pi_imp(.|s) || pi(.|s)) + alpha KL(b(.|s) || pi(.|s)) ]
         = - E_{(s,a)~D}[ (1 - alpha) sum_j w_j log pi(a_j|s) + alpha log pi(a|s) ] + const,
    a_j ~ pi'(.|s) (j = 1..M),   w_j = softmax_j( Q'(s, a_j) / eta ),

so ``alpha = 1`` is pure behaviour cloning (BC) with the same network, and ``alpha -> 0`` is pure
policy improvement (the paper's α; the issue's "RL coefficient" is ``1 - alpha``). ``eta`` is the
temperature; as in MPO it is learned by minimising the dual ``g(eta) = eta*epsilon +
eta E_s log mean_j exp(Q'(s,a_j)/eta)`` (a KL bound ``epsilon`` between ``pi_imp`` and ``pi'``), or held
fixed (``learn_temperature=False``).

**Critic.** The critic is distributional (a categorical distribution over fixed atoms, Bellemare et al.
2017; paper Fig. 2 caption: "logits of the distributional Q-function") and trained by TD learning with
the target network, bootstrapping with actions from the policy::

    L_Q = E_{(s,a,r,s')~D}[ CE( Phi[ r + gamma d Z'(s', a') ],  Z(s, a) ) ],   a' ~ pi'(.|s'),

where ``Phi`` projects the shifted target atoms back onto the support (C51 projection) and the target
distribution is the average over ``M'`` sampled bootstrap actions. ``d`` is the stored discount
(0 at a true terminal, 1 otherwise; time-limit truncation keeps d = 1).

**Total.** One network with shared encoder: ``L = L_pi + critic_weight * L_Q`` (+ ``g(eta)`` for the
separate temperature parameter). With ``alpha = 1`` the policy gradient equals the BC gradient; the
critic is still trained ("BC+Q": our label; whether the paper names or runs such a baseline is unverified);
with ``critic_weight = 0`` as well, the whole update is plain BC.

**Checked against the paper (and what could not be).** The paper's full text (method section,
appendix tables) could not be retrieved in this environment; only its abstract, the Fig. 2 caption
and public summaries of its method could. Verified from those:

* the alpha convention: the paper's alpha weights the BC (data) term and ``1 - alpha`` the
  Q-derived improved policy, "pure BC at alpha = 1, full RL at alpha = 0". Ours is the same
  convention (``alpha = 1`` is BC); the issue's "RL coefficient" is ``1 - alpha``, so "RL
  coefficient 0 gives pure BC" is ``alpha = 1`` here (with ``critic_weight = 0`` the update is
  exactly BC; ``tests/pac`` checks both);
* the policy loss is a KL-regularised, MPO-style actor-critic loss (improved policy from the Q-function,
  projected onto the network by weighted maximum likelihood) plus the BC term;
* the critic is distributional: the Q decoder "outputs the action-specific logits of the
  distributional Q-function" (Fig. 2 caption), and the policy decoder "outputs the logits of action
  distributions" (hence a categorical policy over discretised actions).

Not verified (our choices, flagged as such in notebooks 31/32): the exact improvement term (samples
from the target vs. online policy, learned vs. fixed temperature and its KL bound ``epsilon``), any
further KL/"beta" term, one-step vs. multi-step TD targets, the number and range of the value atoms,
the number of action bins, the target-network update rule/period, the paper's alpha for PAC (our
default 0.75 is a choice), learning rates and batch sizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from replicate.pac.perceiver import PerceiverActorCritic, discretise_actions, q_mean
from replicate.params import ParameterError

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PACConfig:
    """Hyper-parameters of the offline actor-critic objective (defaults are our choices unless noted).

    Attributes:
        alpha: weight of the BC term; ``1 - alpha`` weights Q-based improvement (the paper's α,
            same convention: α = 1 is pure BC, α = 0 pure RL; secondary summary). Our default 0.75 is a choice;
            the paper's value for PAC is not verified.
        gamma: discount of the TD target.
        num_policy_samples: ``M`` actions sampled from the target policy per state for the policy
            improvement term and for the bootstrap.
        epsilon: KL bound of the MPO-style temperature dual.
        init_temperature: initial (or fixed) ``eta``.
        learn_temperature: learn ``eta`` through the dual; otherwise keep it fixed.
        critic_weight: weight of ``L_Q`` in the total loss.
        target_update_period: copy online -> target parameters every this many steps.
    """

    alpha: float = 0.75
    gamma: float = 0.99
    num_policy_samples: int = 8
    epsilon: float = 0.1
    init_temperature: float = 1.0
    learn_temperature: bool = True
    critic_weight: float = 1.0
    target_update_period: int = 100

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ParameterError(f"alpha={self.alpha} must be in [0, 1] (1 = behaviour cloning); change ALPHA")
        if not 0.0 <= self.gamma < 1.0:
            raise ParameterError(f"gamma={self.gamma} must be in [0, 1); change GAMMA")
        if self.num_policy_samples < 1 or self.target_update_period < 1:
            raise ParameterError(f"num_policy_samples={self.num_policy_samples} and target_update_period="
                                 f"{self.target_update_period} must be >= 1 (NUM_POLICY_SAMPLES, TARGET_UPDATE_PERIOD)")
        if self.epsilon <= 0 or self.init_temperature <= 0:
            raise ParameterError(f"epsilon={self.epsilon} and init_temperature={self.init_temperature} must be > 0")
        if self.critic_weight < 0:
            raise ParameterError(f"critic_weight={self.critic_weight} must be >= 0 (0 turns the critic loss off)")


# ------------------------------------------------------------------------------------------
# Pure pieces (tested against NumPy transcriptions).


def action_log_prob(logits: Array, action_idx: Array, action_mask: Array) -> Array:
    """``log pi(a|s) = sum_d log softmax(logits_d)[a_d]`` over valid dimensions. logits (..., A, K)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, action_idx[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(action_mask, picked, 0.0), axis=-1)


def categorical_projection(next_probs: Array, rewards: Array, discounts: Array, atoms: Array, gamma: float) -> Array:
    """C51 projection ``Phi[r + gamma d z]`` of ``next_probs`` (B, V) onto ``atoms`` (V,). Returns (B, V)."""
    v_min, v_max = atoms[0], atoms[-1]
    dz = atoms[1] - atoms[0]
    tz = jnp.clip(rewards[:, None] + gamma * discounts[:, None] * atoms[None, :], v_min, v_max)  # (B, V)
    # Weight of source atom j on target atom i: max(0, 1 - |tz_j - z_i| / dz).
    w = jnp.clip(1.0 - jnp.abs(tz[:, None, :] - atoms[None, :, None]) / dz, 0.0, 1.0)  # (B, V_i, V_j)
    return jnp.einsum("bij,bj->bi", w, next_probs)


def critic_loss(q_logits: Array, target_probs: Array) -> Array:
    """Cross-entropy ``-sum_i p_i log softmax(q_logits)_i`` per sample."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(q_logits, axis=-1), axis=-1)


def improvement_weights(q_samples: Array, temperature: Array) -> Array:
    """``w_j = softmax_j(Q(s, a_j) / eta)`` over the M samples of each state. q_samples (B, M)."""
    return jax.nn.softmax(q_samples / temperature, axis=-1)


def policy_loss(logp_data: Array, logp_samples: Array, weights: Array, alpha: float) -> Array:
    """Per-state ``-( (1-alpha) sum_j w_j log pi(a_j|s) + alpha log pi(a|s) )`` (weights are constants)."""
    improve = jnp.sum(jax.lax.stop_gradient(weights) * logp_samples, axis=-1)
    return -((1.0 - alpha) * improve + alpha * logp_data)


def temperature_dual(q_samples: Array, temperature: Array, epsilon: float) -> Array:
    """MPO dual ``eta*epsilon + eta * mean_s log mean_j exp(Q_j/eta)`` (Q treated as constant)."""
    q = jax.lax.stop_gradient(q_samples)
    m = q.shape[-1]
    lse = jax.scipy.special.logsumexp(q / temperature, axis=-1) - jnp.log(m)
    return temperature * epsilon + temperature * jnp.mean(lse)


# ------------------------------------------------------------------------------------------
# The full loss on a batch.


def _sample_actions(key: Array, logits: Array, num: int) -> Array:
    """``num`` actions per state from a factorised categorical policy: (B, A, K) -> (B, num, A)."""
    b, a, _ = logits.shape
    idx = jax.random.categorical(key, logits, axis=-1, shape=(num, b, a))
    return jnp.swapaxes(idx, 0, 1)


def _q_for_samples(model: PerceiverActorCritic, params, z: Array, idx: Array, action_mask: Array) -> Array:
    """Q logits for M actions per state: z (B, N, D), idx (B, M, A) -> (B, M, V)."""
    b, m, a = idx.shape
    zr = jnp.repeat(z, m, axis=0)
    mr = jnp.repeat(action_mask, m, axis=0)
    out = model.apply(params, zr, idx.reshape(b * m, a), mr, method=PerceiverActorCritic.q_logits)
    return out.reshape(b, m, -1)


def pac_loss(
    params,
    target_params,
    log_temperature: Array,
    batch: Mapping[str, Array],
    key: Array,
    model: PerceiverActorCritic,
    cfg: PACConfig,
    alpha: Array | float | None = None,
    critic_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Any]]:
    """Total PAC loss on ``batch`` and diagnostics.

    ``alpha`` / ``critic_weight`` (optional, may be traced arrays) override ``cfg.alpha`` /
    ``cfg.critic_weight``, so BC, PAC and an alpha sweep share one compiled training step.

    ``batch`` keys: ``obs``, ``next_obs`` (B, O) float; ``obs_mask`` (B, O) bool; ``task`` (B,) int;
    ``action`` (B, A) float in [-1, 1]; ``action_mask`` (B, A) bool; ``reward``, ``discount`` (B,).
    Differentiable in ``params`` and ``log_temperature``; ``target_params`` are only read.
    """
    net = model.cfg
    atoms = net.value_atoms
    m = cfg.num_policy_samples
    k_pi, k_next = jax.random.split(key)
    a_idx = discretise_actions(batch["action"], net.num_action_bins)
    amask = batch["action_mask"]
    enc = lambda p, o: model.apply(p, o, batch["obs_mask"], batch["task"], method=PerceiverActorCritic.encode)  # noqa: E731
    pol = lambda p, z: model.apply(p, z, amask, method=PerceiverActorCritic.policy_logits)  # noqa: E731

    # Online network on s.
    z = enc(params, batch["obs"])
    logits = pol(params, z)
    q_logits = model.apply(params, z, a_idx, amask, method=PerceiverActorCritic.q_logits)

    # Target network on s (policy-improvement samples and their Q') and on s' (bootstrap).
    tp = jax.lax.stop_gradient(target_params)
    z_t = enc(tp, batch["obs"])
    samples = _sample_actions(k_pi, pol(tp, z_t), m)  # (B, M, A)
    q_samples = q_mean(_q_for_samples(model, tp, z_t, samples, amask), atoms)  # (B, M)
    z_next = enc(tp, batch["next_obs"])
    next_samples = _sample_actions(k_next, pol(tp, z_next), m)
    next_probs = jnp.mean(jax.nn.softmax(_q_for_samples(model, tp, z_next, next_samples, amask), axis=-1), axis=1)
    target_probs = jax.lax.stop_gradient(
        categorical_projection(next_probs, batch["reward"], batch["discount"], atoms, cfg.gamma)
    )

    temperature = jnp.exp(log_temperature)
    eta = temperature if cfg.learn_temperature else jnp.asarray(cfg.init_temperature)
    eta_const = jax.lax.stop_gradient(eta)
    weights = improvement_weights(q_samples, eta_const)
    logp_data = action_log_prob(logits, a_idx, amask)
    logp_samples = action_log_prob(logits[:, None], samples, amask[:, None])  # (B, M)

    alpha = cfg.alpha if alpha is None else alpha
    critic_weight = cfg.critic_weight if critic_weight is None else critic_weight
    l_pi = jnp.mean(policy_loss(logp_data, logp_samples, weights, alpha))
    l_q = jnp.mean(critic_loss(q_logits, target_probs))
    l_eta = temperature_dual(q_samples, eta, cfg.epsilon) if cfg.learn_temperature else jnp.zeros(())
    total = l_pi + critic_weight * l_q + l_eta
    aux = {
        "loss": total,
        "policy_loss": l_pi,
        "critic_loss": l_q,
        "temperature_loss": l_eta,
        "temperature": eta_const,
        "bc_nll": -jnp.mean(logp_data),
        "q_data": jnp.mean(q_mean(q_logits, atoms)),
        "q_policy": jnp.mean(q_samples),
        "weights_max": jnp.mean(jnp.max(weights, axis=-1)),
        # For tests / inspection (not logged):
        "_samples": samples,
        "_q_samples": q_samples,
        "_target_probs": target_probs,
    }
    return total, aux


def bc_loss(params, batch: Mapping[str, Array], model: PerceiverActorCritic) -> Array:
    """Plain behaviour cloning ``-E log pi(a|s)`` with the same network (reference for the alpha = 1 test)."""
    a_idx = discretise_actions(batch["action"], model.cfg.num_action_bins)
    z = model.apply(params, batch["obs"], batch["obs_mask"], batch["task"], method=PerceiverActorCritic.encode)
    logits = model.apply(params, z, batch["action_mask"], method=PerceiverActorCritic.policy_logits)
    return -jnp.mean(action_log_prob(logits, a_idx, batch["action_mask"]))
