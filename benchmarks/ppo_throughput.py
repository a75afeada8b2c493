"""PPO throughput: environment steps per second of the jitted PPO loop vs a Python-loop PPO (CleanRL style).

``python benchmarks/ppo_throughput.py [--envs 8 64] [--updates 20] [--note TEXT]``

Both agents are the same algorithm and network (``replicate.rl.ppo``: ``ActorCritic`` MLP 64x64,
two value heads, the same ``ppo_loss``, GAE, Adam, 4 epochs x 4 minibatches, rollout 128) on
CartPole-v1, and both are timed after compilation:

* **jitted** (candidate): ``ppo.make_train`` on gymnax's CartPole-v1: the whole run (environment
  steps, GAE, minibatch updates) is one XLA program (``lax.scan`` over updates, steps, epochs,
  minibatches), PureJaxRL's design;
* **Python loop** (baseline, CleanRL's ``ppo.py``/``ppo_jax`` structure): gymnasium's
  ``SyncVectorEnv`` of CartPole-v1 stepped from Python, the policy's action drawn by a jitted
  function every step (one host-device round trip per step), GAE and the update epochs as one
  jitted call per update.

Reported: environment steps per second of each and their ratio, per number of parallel
environments. Writes ``benchmarks/results/ppo_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate.benchmarking import time_call, write_results
from replicate.rl import envs, ppo


def jitted_steps_per_s(cfg: ppo.PPOConfig, env) -> float:
    train = jax.jit(ppo.make_train(cfg, env, None))
    key = jax.random.PRNGKey(0)
    t = time_call(lambda: train(key)[1]["loss"], repeats=3, warmup=1, min_time_s=0.5)
    return cfg.num_updates * cfg.batch_size / t["median_s"]


def python_loop_steps_per_s(cfg: ppo.PPOConfig, n_updates: int) -> float:
    import gymnasium as gym

    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(cfg.num_envs)])
    net = ppo.ActorCritic(2, tuple(cfg.hidden), cfg.activation)
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate, eps=cfg.adam_eps))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((4,), jnp.float32))
    opt_state = tx.init(params)

    @jax.jit
    def act(params, obs, key):
        logits, v_e, v_i = net.apply(params, obs)
        a = jax.random.categorical(key, logits)
        return a, ppo.categorical_logp_entropy(logits, a)[0], v_e, v_i

    @jax.jit
    def update(params, opt_state, obs, actions, logp, v_e, v_i, rewards, dones, last_obs, key):
        _, lv_e, lv_i = net.apply(params, last_obs)
        adv, ret = ppo.gae(rewards, v_e, dones, lv_e, cfg.gamma, cfg.gae_lambda)
        batch = {"obs": obs, "action": actions, "logp": logp, "adv": cfg.ext_coef * adv, "v_ext": v_e, "v_int": v_i,
                 "ret_ext": ret, "ret_int": jnp.zeros_like(ret)}
        batch = jax.tree.map(lambda x: x.reshape((cfg.batch_size,) + x.shape[2:]), batch)

        def epoch(state, k):
            perm = jax.random.permutation(k, cfg.batch_size)
            mbs = jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_size) + x.shape[1:]), batch)

            def mb(state, b):
                p, o = state
                grads = jax.grad(lambda p: ppo.ppo_loss(cfg, *net.apply(p, b["obs"]), b, 0.0)[0])(p)
                u, o = tx.update(grads, o, p)
                return (optax.apply_updates(p, u), o), None

            return jax.lax.scan(mb, state, mbs)[0], None

        return jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, cfg.update_epochs))[0]

    T, E = cfg.num_steps, cfg.num_envs
    obs, _ = venv.reset(seed=0)
    key = jax.random.PRNGKey(1)

    def one_update(params, opt_state, obs, key):
        buf = {k: [] for k in ("obs", "a", "logp", "ve", "vi", "r", "d")}
        for t in range(T):
            key, k = jax.random.split(key)
            a, logp, ve, vi = act(params, jnp.asarray(obs, jnp.float32), k)
            a_np = np.asarray(a)
            nobs, r, term, trunc, _ = venv.step(a_np)
            for name, v in (("obs", obs), ("a", a_np), ("logp", logp), ("ve", ve), ("vi", vi), ("r", r), ("d", term | trunc)):
                buf[name].append(v)
            obs = nobs
        key, k = jax.random.split(key)
        st = {k_: np.stack([np.asarray(x) for x in v]) for k_, v in buf.items()}
        params, opt_state = update(params, opt_state, st["obs"].astype(np.float32), st["a"], st["logp"], st["ve"], st["vi"],
                                   st["r"].astype(np.float32), st["d"], jnp.asarray(obs, jnp.float32), k)
        return params, opt_state, obs, key

    params, opt_state, obs, key = one_update(params, opt_state, obs, key)  # compile
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for _ in range(n_updates):
        params, opt_state, obs, key = one_update(params, opt_state, obs, key)
    jax.block_until_ready(params)
    return n_updates * T * E / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="*", type=int, default=[8, 64])
    ap.add_argument("--updates", type=int, default=20, help="updates per timed run (jitted) / timed updates (loop)")
    ap.add_argument("--loop-updates", type=int, default=3)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    env = envs.gymnax_env("CartPole-v1")
    rows = []
    for E in args.envs:
        cfg = ppo.PPOConfig(num_envs=E, num_steps=128, total_timesteps=E * 128 * args.updates, gamma=0.99, learning_rate=2.5e-4)
        fast = jitted_steps_per_s(cfg, env)
        slow = python_loop_steps_per_s(cfg, args.loop_updates)
        rows.append({"env": "CartPole-v1", "num_envs": E, "rollout": 128, "jitted_steps_per_s": fast,
                     "python_loop_steps_per_s": slow, "ratio_jitted_over_loop": fast / slow, "device": jax.default_backend()})
        print(rows[-1], flush=True)
    notes = ("Same PPO (replicate.rl.ppo: ActorCritic 64x64 with two value heads, ppo_loss, GAE, Adam, 4 epochs x 4 "
             "minibatches, rollout 128) timed after compilation. jitted: ppo.make_train on gymnax CartPole-v1, the whole "
             "run one XLA program (PureJaxRL). Python loop: gymnasium SyncVectorEnv CartPole-v1 stepped from Python with "
             "a jitted action function per step and one jitted update per rollout (CleanRL's structure). "
             "Atari steps/s through ale-py's vector environment: not measured yet. " + args.note)
    write_results("ppo_throughput", rows, title="PPO environment steps per second: jitted loop vs Python loop", notes=notes)


if __name__ == "__main__":
    main()
