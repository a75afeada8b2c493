"""PPO throughput: environment steps per second of the jitted PPO loop vs a Python-loop PPO (CleanRL style).

``python benchmarks/ppo_throughput.py [--envs 8 64] [--updates 20] [--collect-envs 8 32] [--note TEXT]``

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

**Atari rollout collection** (``--collect-envs``, Montezuma's Revenge): agent steps per second of
``replicate.rl.atari.collect`` on the EnvPool backend (``PoolAtari``: two groups, one group's emulators stepping
in C++ while the jitted Nature-CNN ``act`` draws the other group's actions; no update) and of the same with one
group (no overlap), against EnvPool's own random-action throughput (one synchronous ``envpool.make`` of the
same number of environments and the same protocol, uniformly random actions, no agent). The three are measured
alternately, ``--collect-reps`` times each, medians reported (the machine is shared).

**Atari agent** (``--atari-games``; notebook 13's agent at its ``cpu`` settings: 8 environments, rollout 64,
2 epochs x 4 minibatches, RECODE memory 5000): agent steps per second *with learning* (``atari_agent``'s
default environment, EnvPool; rollouts by ``atari.collect``; one jitted update per rollout: bonus + intrinsic
normalisation + GAE + PPO epochs) for each bonus (none / RND / RECODE), timed after compilation, with the
fraction of the time spent collecting (``collect_share``), against EnvPool's random-action throughput at 8
environments measured in the same run (1 frame = 1/4 agent step). The reference rows of the ale-py backend:
``VecAtari`` (ale-py emulators stepped from Python with the DQN preprocessing) with uniformly random actions, and
bare ``ALEInterface.act`` on 8 emulators (4 raw frames per step, no preprocessing).

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
    vec = atari.make_vec(run.atari, num_envs, seed=0)
    benv = atari_agent.bonus_env(vec.n_actions, run.atari.size, run.atari.game)
    agent_bonus = bonus.make_bonus(method, benv, num_envs, run.bonus_config())
    init, act, update = atari_agent.make_agent(cfg, vec.n_actions, agent_bonus, benv, channels_first=vec.channels_first)
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
    return {"steps_per_s": steps / (collect_s + update_s), "collect_share": collect_s / (collect_s + update_s),
            "collect_steps_per_s": steps / collect_s, "update_s": update_s / n_updates}


def envpool_random_steps_per_s(game: str, n_steps: int, num_envs: int) -> float:
    """EnvPool's own throughput: one synchronous pool of ``num_envs`` environments with the protocol's options,
    uniformly random actions, no agent (the baseline of the rollout-collection rows)."""
    import envpool

    from replicate.rl import atari

    cfg = atari.AtariConfig(game=game)
    pool = envpool.make(atari.envpool_task(game), num_envs=num_envs, env_seed=list(range(num_envs)),
                        **atari.envpool_options(cfg))
    pool.reset()
    actions = np.random.default_rng(0).integers(0, pool.action_space.n, (n_steps, num_envs)).astype(np.int32)
    pool.step(actions[0])
    t0 = time.perf_counter()
    for t in range(n_steps):
        pool.step(actions[t])
    out = n_steps * num_envs / (time.perf_counter() - t0)
    pool.close()
    return out


def make_collector(game: str, num_envs: int, groups: int, num_steps: int):
    """``run()`` -> seconds for one rollout of ``num_steps`` steps: ``atari.collect`` on ``PoolAtari`` with the
    agent's jitted act (Nature CNN, no bonus, no update), compiled before."""
    from replicate.recode import atari_agent
    from replicate.rl import atari

    run = atari_agent.RunConfig(num_envs=num_envs, num_steps=num_steps,
                                atari=atari.AtariConfig(game=game, groups=groups))
    vec = atari.make_vec(run.atari, num_envs, seed=0)
    init, act, _ = atari_agent.make_agent(run.ppo_config(), vec.n_actions, None, None, channels_first=True)
    state = {"obs": vec.reset(), "first": np.ones(num_envs, bool), "key": jax.random.PRNGKey(0)}
    params = init(jax.random.PRNGKey(1), state["obs"])["params"]
    visited, stats = set(), {"returns": []}

    def run_once() -> float:
        t0 = time.perf_counter()
        _, state["obs"], state["first"], state["key"] = atari.collect(
            vec, act, params, state["obs"], state["first"], state["key"], num_steps, visited, stats)
        return time.perf_counter() - t0

    run_once()  # compiles act for the group's batch
    return run_once


def atari_collect_rows(game: str, env_counts, reps: int, num_steps: int) -> list[dict]:
    """Rollout collection (PoolAtari + jitted act, two groups and one) vs EnvPool random actions, alternated."""
    rows = []
    for E in env_counts:
        pipelined, single = make_collector(game, E, 2, num_steps), make_collector(game, E, 1, num_steps)
        times = {"random": [], "two": [], "one": []}
        for _ in range(reps):
            times["random"].append(E * num_steps / envpool_random_steps_per_s(game, num_steps, E))
            times["two"].append(pipelined())
            times["one"].append(single())
        rate = {k: E * num_steps / float(np.median(v)) for k, v in times.items()}
        for name, label in (("two", "2 groups, pipelined"), ("one", "1 group")):
            rows.append({
                "env": game,
                "num_envs": E,
                "rollout": num_steps,
                "candidate": f"rollout collection: atari.collect on PoolAtari ({label}) + jitted act, no update",
                "steps_per_s": rate[name],
                "baseline": "EnvPool random actions (sync, same envs)",
                "baseline_steps_per_s": rate["random"],
                "ratio": rate[name] / rate["random"],
                "device": jax.default_backend(),
            })
            print(rows[-1], flush=True)
    return rows


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
    ap.add_argument("--collect-envs", nargs="*", type=int, default=[8, 32], help="rollout-collection rows")
    ap.add_argument("--collect-reps", type=int, default=5)
    ap.add_argument("--collect-steps", type=int, default=64)
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
    rows += atari_collect_rows("montezuma_revenge", args.collect_envs, args.collect_reps, args.collect_steps)
    for game in args.atari_games:
        n_ceiling = 64 * args.atari_updates
        ceiling = atari_random_steps_per_s(game, n_ceiling)
        bare = bare_ale_steps_per_s(game, n_ceiling)
        pool_random = envpool_random_steps_per_s(game, n_ceiling, 8)
        rows.append(
            {
                "env": game,
                "num_envs": 8,
                "rollout": 64,
                "candidate": "VecAtari (ale backend), random actions",
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
                    "candidate": f"nb13 PPO agent + {method} bonus, with learning (EnvPool)",
                    "steps_per_s": r["steps_per_s"],
                    "baseline": "EnvPool random actions (sync, same envs)",
                    "baseline_steps_per_s": pool_random,
                    "ratio": r["steps_per_s"] / pool_random,
                    "frames_per_s": 4 * r["steps_per_s"],
                    "collect_share": r["collect_share"],
                    "collect_steps_per_s": r["collect_steps_per_s"],
                    "update_s": r["update_s"],
                    "device": jax.default_backend(),
                }
            )
            print(rows[-1], flush=True)
    import os

    load = os.getloadavg()
    notes = (
        "Same PPO (replicate.rl.ppo: ActorCritic 64x64 with two value heads, ppo_loss, GAE, Adam, 4 epochs x 4 "
        "minibatches, rollout 128) timed after compilation. jitted: ppo.make_train on gymnax CartPole-v1, the whole "
        "run one XLA program (PureJaxRL). Python loop: gymnasium SyncVectorEnv CartPole-v1 stepped from Python with "
        "a jitted action function per step and one jitted update per rollout (CleanRL's structure). "
        "ratio = steps_per_s / baseline_steps_per_s. Rollout-collection rows (Montezuma's Revenge): atari.collect on "
        "the EnvPool backend with the agent's jitted Nature-CNN act and no update, 2 pipelined groups and 1 group, vs "
        "EnvPool's own random-action throughput at the same number of environments, measured alternately "
        f"{args.collect_reps} times x {args.collect_steps} steps, medians. Atari agent rows: agent steps per second "
        "(1 agent step = 4 emulator frames) of notebook 13's agent at its cpu settings with learning (EnvPool "
        "rollouts, one jitted update per rollout with the bonus), timed after compilation over "
        f"{args.atari_updates} updates of 8 x 64 steps, vs EnvPool random actions at 8 envs; collect_share = the "
        "fraction of the agent's time spent in rollouts (env + act), the rest is the update (update_s per update); "
        "collect_steps_per_s = rollout steps per second of collection alone inside the agent. VecAtari row: the "
        "ale-py reference backend with random actions vs bare ALEInterface.act. "
        f"Load average (1, 5, 15 min) at the end: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on "
        f"{os.cpu_count()} cores. " + args.note
    )
    write_results(
        "ppo_throughput",
        rows,
        title="PPO environment steps per second: jitted loop vs Python loop; Atari agent vs its environment ceiling",
        notes=notes,
    )


if __name__ == "__main__":
    main()
