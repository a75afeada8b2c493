"""PPO throughput: environment steps per second of the jitted PPO loop vs a Python-loop PPO (CleanRL style).

``python benchmarks/ppo_throughput.py [--envs 8 64] [--updates 20] [--note TEXT]``

Both agents are the same algorithm and network (``replicate.rl.ppo`` with
``replicate.nn.actor_critic.ActorCritic`` MLP 64x64,
two value heads, the same ``ppo_loss``, GAE, Adam, 4 epochs x 4 minibatches, rollout 128) on
CartPole-v1, and both are timed after compilation:

* **jitted** (candidate): ``ppo.make_train`` on gymnax's CartPole-v1: the whole run (environment
  steps, GAE, minibatch updates) is one XLA program (``lax.scan`` over updates, steps, epochs,
  minibatches), PureJaxRL's design;
* **Python loop** (baseline, CleanRL's ``ppo.py``/``ppo_jax`` structure): gymnasium's
  ``SyncVectorEnv`` of CartPole-v1 stepped from Python, the policy's action drawn by a jitted
  function every step (one host-device round trip per step), GAE and the update epochs as one
  jitted call per update (the candidate's own ``ppo.learn``, so only the loop structure differs).

Reported: environment steps per second of each and their ratio, per number of parallel
environments.

**Atari** (``--atari-games``; notebook 13's agent at its ``cpu`` settings: 8 environments, rollout 64,
2 epochs x 4 minibatches, RECODE memory 5000): agent steps per second *with learning* of
``replicate.rl.atari`` (the Python vector environment ``VecAtari`` of ale-py emulators with the DQN
preprocessing, the jitted Nature-CNN ``act`` every step, one jitted update per rollout: bonus + intrinsic
normalisation + GAE + PPO epochs) for each bonus (none / RND / RECODE), timed after compilation, against
the ceiling measured in the same run: the same ``VecAtari`` stepped with uniformly random actions and no
agent at all (ratio agent / ceiling; 1 frame = 1/4 agent step). A second, lower-level reference: bare
``ALEInterface.act`` on 8 emulators (4 raw frames per step, no preprocessing).

Writes ``benchmarks/results/ppo_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate.benchmarking import time_call, write_results
from replicate.nn import actor_critic
from replicate.rl import envs, ppo


def jitted_steps_per_s(cfg: ppo.PPOConfig, env) -> float:
    train = jax.jit(ppo.make_train(cfg, env, None))
    key = jax.random.PRNGKey(0)
    t = time_call(lambda: train(key)[1]["loss"], repeats=3, warmup=1, min_time_s=0.5)
    return cfg.num_updates * cfg.batch_size / t["median_s"]


def python_loop_steps_per_s(cfg: ppo.PPOConfig, n_updates: int) -> float:
    import gymnasium as gym

    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(cfg.num_envs)])
    net = actor_critic.ActorCritic(2, tuple(cfg.hidden), cfg.activation)
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
        # the same update as the jitted candidate (ppo.learn, no intrinsic stream), one jitted call per rollout
        _, lv_e, lv_i = net.apply(params, last_obs)
        traj = ppo.Rollout(
            obs=obs,
            action=actions,
            logp=logp,
            v_ext=v_e,
            v_int=v_i,
            reward=rewards,
            done=dones,
            first=None,
            next_obs=None,
            next_state_id=None,
            success=None,
        )
        params, opt_state, _ = ppo.learn(
            cfg, net, tx, params, opt_state, traj, jnp.zeros_like(rewards), lv_e, lv_i, 0.0, 0.0, key
        )
        return params, opt_state

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
            for name, v in (
                ("obs", obs),
                ("a", a_np),
                ("logp", logp),
                ("ve", ve),
                ("vi", vi),
                ("r", r),
                ("d", term | trunc),
            ):
                buf[name].append(v)
            obs = nobs
        key, k = jax.random.split(key)
        st = {k_: np.stack([np.asarray(x) for x in v]) for k_, v in buf.items()}
        params, opt_state = update(
            params,
            opt_state,
            st["obs"].astype(np.float32),
            st["a"],
            st["logp"],
            st["ve"],
            st["vi"],
            st["r"].astype(np.float32),
            st["d"],
            jnp.asarray(obs, jnp.float32),
            k,
        )
        return params, opt_state, obs, key

    params, opt_state, obs, key = one_update(params, opt_state, obs, key)  # compile
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for _ in range(n_updates):
        params, opt_state, obs, key = one_update(params, opt_state, obs, key)
    jax.block_until_ready(params)
    return n_updates * T * E / (time.perf_counter() - t0)


def atari_agent_steps_per_s(game: str, method: str, n_updates: int, num_envs: int = 8, num_steps: int = 64) -> dict:
    """Notebook 13's agent (cpu profile settings): agent steps/s of rollout + jitted act + update, after compilation."""
    from replicate.recode import atari_agent, bonus
    from replicate.rl import atari

    run = atari_agent.RunConfig(
        total_frames=4 * num_envs * num_steps * (n_updates + 1),
        num_envs=num_envs,
        num_steps=num_steps,
        ppo=(("update_epochs", 2), ("num_minibatches", 4), ("learning_rate", 3e-4)),
        embedding="ap",
        embed_dim=32,
        memory_size=5000,
        atari=atari.AtariConfig(game=game),
    )
    cfg = run.ppo_config()
    vec = atari.VecAtari(run.atari, num_envs, seed=0)
    benv = atari_agent.bonus_env(vec.n_actions, run.atari.size, run.atari.game)
    agent_bonus = bonus.make_bonus(method, benv, num_envs, run.bonus_config())
    init, act, update = atari_agent.make_agent(cfg, vec.n_actions, agent_bonus, benv)
    key = jax.random.PRNGKey(0)
    obs = vec.reset()
    state = init(key, obs)
    first = np.ones(num_envs, bool)
    visited, stats = set(), {"returns": []}

    def one(state, obs, first, key):
        t0 = time.perf_counter()
        traj, obs, first, key = atari.collect(vec, act, state["params"], obs, first, key, num_steps, visited, stats)
        traj["last_obs"] = obs
        key, k = jax.random.split(key)
        t1 = time.perf_counter()
        state, info = update(state, traj, k)
        jax.block_until_ready(info)
        return state, obs, first, key, t1 - t0, time.perf_counter() - t1

    state, obs, first, key, _, _ = one(state, obs, first, key)  # compiles act and update
    collect_s = update_s = 0.0
    for _ in range(n_updates):
        state, obs, first, key, c, u = one(state, obs, first, key)
        collect_s, update_s = collect_s + c, update_s + u
    steps = n_updates * num_steps * num_envs
    return {"steps_per_s": steps / (collect_s + update_s), "collect_share": collect_s / (collect_s + update_s)}


def atari_random_steps_per_s(game: str, n_steps: int, num_envs: int = 8) -> float:
    """The ceiling: the same VecAtari (preprocessing, auto-reset, room ids) with uniformly random actions, no agent."""
    from replicate.rl import atari

    vec = atari.VecAtari(atari.AtariConfig(game=game), num_envs, seed=0)
    vec.reset()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        vec.step(rng.integers(0, vec.n_actions, num_envs))
    return n_steps * num_envs / (time.perf_counter() - t0)


def bare_ale_steps_per_s(game: str, n_steps: int, num_envs: int = 8, frame_skip: int = 4) -> float:
    """Bare ``ALEInterface.act`` (frame_skip raw frames per step, no screen read, no preprocessing), random actions."""
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ales = []
    for i in range(num_envs):
        a = ALEInterface()
        a.setInt("random_seed", i)
        a.setFloat("repeat_action_probability", 0.0)
        a.loadROM(roms.get_rom_path(game))
        ales.append(a)
    acts = ales[0].getMinimalActionSet()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        for a in ales:
            act = acts[rng.integers(len(acts))]
            for _ in range(frame_skip):
                a.act(act)
            if a.game_over():
                a.reset_game()
    return n_steps * num_envs / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="*", type=int, default=[8, 64])
    ap.add_argument("--updates", type=int, default=20, help="updates per timed run (jitted) / timed updates (loop)")
    ap.add_argument("--loop-updates", type=int, default=3)
    ap.add_argument("--atari-games", nargs="*", default=["montezuma_revenge", "pitfall"])
    ap.add_argument("--atari-methods", nargs="*", default=["none", "rnd", "recode"])
    ap.add_argument(
        "--atari-updates", type=int, default=2, help="timed updates per Atari agent (8 envs x 64 steps each)"
    )
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    env = envs.gymnax_env("CartPole-v1")
    rows = []
    for E in args.envs:
        cfg = ppo.PPOConfig(
            num_envs=E, num_steps=128, total_timesteps=E * 128 * args.updates, gamma=0.99, learning_rate=2.5e-4
        )
        fast = jitted_steps_per_s(cfg, env)
        slow = python_loop_steps_per_s(cfg, args.loop_updates)
        rows.append(
            {
                "env": "CartPole-v1",
                "num_envs": E,
                "rollout": 128,
                "candidate": "jitted PPO loop",
                "steps_per_s": fast,
                "baseline": "Python-loop PPO",
                "baseline_steps_per_s": slow,
                "ratio": fast / slow,
                "device": jax.default_backend(),
            }
        )
        print(rows[-1], flush=True)
    for game in args.atari_games:
        n_ceiling = 64 * args.atari_updates
        ceiling = atari_random_steps_per_s(game, n_ceiling)
        bare = bare_ale_steps_per_s(game, n_ceiling)
        rows.append(
            {
                "env": game,
                "num_envs": 8,
                "rollout": 64,
                "candidate": "VecAtari, random actions (ceiling)",
                "steps_per_s": ceiling,
                "baseline": "bare ALEInterface.act x4, no preprocessing",
                "baseline_steps_per_s": bare,
                "ratio": ceiling / bare,
                "device": "cpu (emulator)",
            }
        )
        print(rows[-1], flush=True)
        for method in args.atari_methods:
            r = atari_agent_steps_per_s(game, method, args.atari_updates)
            rows.append(
                {
                    "env": game,
                    "num_envs": 8,
                    "rollout": 64,
                    "candidate": f"nb13 PPO agent + {method} bonus, with learning",
                    "steps_per_s": r["steps_per_s"],
                    "baseline": "VecAtari, random actions (ceiling)",
                    "baseline_steps_per_s": ceiling,
                    "ratio": r["steps_per_s"] / ceiling,
                    "frames_per_s": 4 * r["steps_per_s"],
                    "collect_share": r["collect_share"],
                    "device": jax.default_backend(),
                }
            )
            print(rows[-1], flush=True)
    notes = (
        "Same PPO (replicate.rl.ppo: ActorCritic 64x64 with two value heads, ppo_loss, GAE, Adam, 4 epochs x 4 "
        "minibatches, rollout 128) timed after compilation. jitted: ppo.make_train on gymnax CartPole-v1, the whole "
        "run one XLA program (PureJaxRL). Python loop: gymnasium SyncVectorEnv CartPole-v1 stepped from Python with "
        "a jitted action function per step and one jitted update per rollout (CleanRL's structure). "
        "ratio = steps_per_s / baseline_steps_per_s. Atari rows: agent steps per second (1 agent step = 4 emulator "
        "frames) of notebook 13's agent at its cpu settings with learning (VecAtari rollouts through ale-py, jitted "
        "Nature-CNN act per step, one jitted update per rollout with the bonus), timed after compilation over "
        f"{args.atari_updates} updates of 8 x 64 steps, against the same VecAtari with random actions and no agent "
        "(the ceiling an agent stepped from Python can reach); collect_share = the fraction of the agent's time "
        "spent in rollouts (env + act) rather than in the update. " + args.note
    )
    write_results(
        "ppo_throughput",
        rows,
        title="PPO environment steps per second: jitted loop vs Python loop; Atari agent vs its environment ceiling",
        notes=notes,
    )


if __name__ == "__main__":
    main()
