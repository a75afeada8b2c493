"""Atari environments: preprocessing shapes/dtypes, max-pooling, room ids from RAM, rollout bookkeeping, and the
EnvPool backend against the ale-py reference step by step (same rooms, rewards, ends and frames)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")

from replicate.params import ParameterError  # noqa: E402
from replicate.rl import atari  # noqa: E402


def test_max_pool_resize_takes_the_pixelwise_max_then_resizes():
    a = np.zeros((210, 160), np.uint8)
    b = np.zeros((210, 160), np.uint8)
    a[:, :80] = 200  # left half bright in frame a only
    b[:, 80:] = 100  # right half in frame b only
    out = atari.max_pool_resize(a, b, 84)
    assert out.shape == (84, 84) and out.dtype == np.uint8
    assert np.all(out[:, :40] == 200) and np.all(out[:, 44:] == 100)  # both halves survive the max


def test_room_id_reads_montezuma_ram_bytes():
    ram = np.zeros(128, np.uint8)
    ram[3], ram[57] = 7, 1
    assert atari.room_id(ram) == 1 * atari.ROOMS_PER_LEVEL + 7
    assert atari.room_id(ram, "pong") == -1


def test_montezuma_reset_obs_and_start_room():
    env = atari.AtariEnv(atari.AtariConfig(), seed=0)
    obs = env.reset()
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
    assert np.all(obs[..., 0] == obs[..., 3])  # the stack is filled with the first frame
    assert env.n_actions == 18
    assert env.room() == 1  # Montezuma's Revenge starts in room 1 of level 0 (RAM byte 3)
    nxt, r, done = env.step(0)
    assert nxt.shape == (84, 84, 4) and np.array_equal(nxt[..., :3], obs[..., 1:])  # the stack shifts by one
    assert r == 0.0 and not done


def test_collect_marks_episode_ends_and_keeps_the_true_next_frame():
    cfg = atari.AtariConfig(max_episode_frames=40, noop_max=0, backend="ale")  # episodes of 10 agent steps
    vec = atari.VecAtari(cfg, 2, seed=1)
    def act(params, obs, keys):  # a fixed policy: NOOP
        z = np.zeros(obs.shape[0])
        return z.astype(np.int32), z, z, z

    obs = vec.reset()
    visited, stats = set(), {"returns": []}
    traj, obs2, first, _ = atari.collect(vec, act, None, obs, np.ones(2, bool), atari.jax.random.PRNGKey(0), 25,
                                         visited, stats)
    done = traj["done"]
    assert done[:, 0].sum() == 2 and done[9, 0] and done[19, 0]  # 40 frames / skip 4 = 10 steps per episode
    assert np.array_equal(traj["first"][1:], done[:-1]) and traj["first"][0].all()
    assert len(stats["returns"]) == 4 and visited == {1}
    # the policy's obs after an end is the reset obs, the stored next frame is the terminal one
    assert np.array_equal(traj["next_frame"][8, 0], traj["obs"][9, 0][..., -1])
    assert np.all(traj["obs"][10, 0][..., 0] == traj["obs"][10, 0][..., 3])


def test_config_validation():
    with pytest.raises(ParameterError, match="frame_skip"):
        atari.AtariConfig(frame_skip=1)
    with pytest.raises(ParameterError, match="backend"):
        atari.AtariConfig(backend="gym")
    with pytest.raises(ParameterError, match="groups"):
        atari.AtariConfig(groups=0)
    with pytest.raises(ParameterError, match="noop_max >= 1"):
        atari.AtariConfig(noop_max=0)  # EnvPool always plays at least one no-op frame
    assert atari.AtariConfig(noop_max=0, backend="ale").noop_max == 0
    with pytest.raises(ParameterError, match="multiple of groups"):
        atari.AtariConfig(groups=2).check_num_envs(3)
    atari.AtariConfig(groups=2, backend="ale").check_num_envs(3)  # the ale backend is one group
    assert atari.AtariConfig().backend == "envpool" and atari.BACKENDS == ("envpool", "ale")


def test_room_ids_is_room_id_on_every_row():
    rams = np.random.default_rng(0).integers(0, 256, size=(5, 3, 128)).astype(np.uint8)
    for game in ("montezuma_revenge", "pitfall", "pong"):
        got = atari.room_ids(rams, game)
        assert got.shape == (5, 3) and got.dtype == np.int32
        assert got.tolist() == [[atari.room_id(r, game) for r in row] for row in rams]


def test_room_id_generalises_to_games_without_a_level_byte():
    ram = np.zeros(128, np.uint8)
    ram[1], ram[57] = 0xC4, 3  # Pitfall!: the screen byte alone; byte 57 means nothing there
    assert atari.room_id(ram, "pitfall") == 0xC4
    assert atari.ROOM_RAM["montezuma_revenge"] == atari.RoomRam(room=3, level=57, rooms_per_level=24)
    with pytest.raises(ParameterError, match="not a ROM"):
        atari.AtariEnv(atari.AtariConfig(game="no_such_game", backend="ale"), seed=0)


def _pitfall_right(r: int) -> int:
    """One step of Pitfall!'s screen LFSR (the screen to the right; taps 3, 4, 5, 7 into bit 0)."""
    return ((r << 1) & 0xFF) | (((r >> 3) ^ (r >> 4) ^ (r >> 5) ^ (r >> 7)) & 1)


def _pitfall_walk(direction):
    """Hold ``direction`` (jumping every third 8-frame block) on the real ROM, one raw frame at a time; return the
    room ids and the fraction of screen pixels that changed on each frame."""
    from ale_py import Action

    env = atari.AtariEnv(atari.AtariConfig(game="pitfall", noop_max=0, backend="ale"), seed=0)
    env.reset()
    move, jump = (Action.RIGHT, Action.RIGHTFIRE) if direction == "right" else (Action.LEFT, Action.LEFTFIRE)
    rooms, changed = [env.room()], []
    prev = env.ale.getScreenGrayscale()
    for t in range(900):
        env.ale.act(jump if (t // 8) % 3 == 0 else move)
        screen = env.ale.getScreenGrayscale()
        changed.append(float(np.mean(screen != prev)))
        rooms.append(env.room())
        prev = screen
        if env.ale.game_over():
            break
    return np.array(rooms), np.array(changed)


@pytest.mark.parametrize("direction", ["right", "left"])
def test_pitfall_room_byte_changes_exactly_when_the_screen_changes(direction):
    rooms, changed = _pitfall_walk(direction)
    assert rooms[0] == 0xC4  # Pitfall Harry starts on screen $C4
    moved = np.diff(rooms) != 0
    assert moved.sum() >= 2  # at least two screens crossed
    # the byte changes on exactly the frames where the picture changes wholesale (a new screen), never otherwise
    assert np.array_equal(moved, changed > 0.02), (np.flatnonzero(moved), np.flatnonzero(changed > 0.02))
    assert changed[moved].min() > 2 * changed[~moved].max()
    # and each change is one step of the game's LFSR: right = forward, left = backward
    seq = rooms[np.r_[True, moved]]
    for a, b in zip(seq[:-1], seq[1:]):
        assert (_pitfall_right(int(a)) == b) if direction == "right" else (_pitfall_right(int(b)) == a), (a, b)
    assert list(seq[:3]) == ([0xC4, 0x89, 0x12] if direction == "right" else [0xC4, 0xE2, 0x71])


# ----------------------------------------------------------------------------------------------
# The EnvPool backend against the ale-py reference


def _policy(game: str, rng, n: int) -> np.ndarray:
    """Random actions; in Pitfall! mostly RIGHT (action 3), which runs into holes and logs: negative rewards."""
    if game == "pitfall":
        return np.where(rng.random(n) < 0.8, 3, rng.integers(0, 18, n))
    return rng.integers(0, 18, n)


@pytest.mark.parametrize("game", ["montezuma_revenge", "pitfall"])
def test_envpool_equals_ale_step_by_step(game):
    """With one no-op frame (both backends then start every episode identically) and episodes cut at 200 frames
    (so that auto-resets happen), the same actions give the same rooms, rewards, ends, episode returns and
    un-resized frames (but the terminal frame of a cut episode, module doc), and the same reset observations."""
    envpool = pytest.importorskip("envpool")
    E, T = 2, 130
    cfg = atari.AtariConfig(game=game, noop_max=1, max_episode_frames=200, groups=2)
    ale = atari.VecAtari(dataclasses.replace(cfg, backend="ale"), E, seed=0)
    pool = atari.PoolAtari(cfg, E, seed=0)
    raw = envpool.make(atari.envpool_task(game), num_envs=E,
                       **{**atari.envpool_options(cfg), "img_height": 210, "img_width": 160, "stack_num": 1})
    obs_ale, obs_pool = ale.reset(), pool.reset()
    raw.reset()
    assert obs_pool.shape == (E, 4, 84, 84) and obs_pool.dtype == np.uint8 and pool.n_actions == ale.n_actions == 18
    assert np.array_equal(pool.rooms(), ale.rooms())
    assert np.abs(np.moveaxis(obs_pool, 1, -1).astype(int) - obs_ale).mean() < 4.0
    rng = np.random.default_rng(1)
    rewards, ends, grey = 0.0, 0, []
    for t in range(T):
        a = _policy(game, rng, E)
        o_a, r_a, d_a, n_a, rm_a, ended_a = ale.step(a)
        o_p, r_p, d_p, n_p, rm_p, ended_p = pool.step(a)
        f_raw, _, term, trunc, _ = raw.step(a.astype(np.int32))
        if (term | trunc).any():
            raw.reset(np.flatnonzero(term | trunc).astype(np.int32))
        assert np.array_equal(d_a, d_p), t
        assert np.array_equal(r_a, r_p) and r_p.dtype == np.float32, t
        assert np.array_equal(rm_a, rm_p), t
        assert ended_a == ended_p, t
        # the max-pooled 210 x 160 frame is the reference's before its resize (PIL): equal after the same resize
        # (not on a step cut by the frame limit: ALE counts the no-op frame in it, so it stops one frame earlier)
        pil = np.stack([atari.max_pool_resize(f, f, 84) for f in f_raw[:, 0]])
        assert np.array_equal(pil[~d_a], n_a[~d_a][..., -1]), t
        # the policy's obs (reset where an episode ended) and the true next obs, resized by each backend's filter
        grey.append(np.abs(n_p[:, -1].astype(int) - n_a[..., -1]).mean())
        grey.append(np.abs(np.moveaxis(o_p, 1, -1).astype(int) - o_a).mean())
        assert np.all(np.all(o_p[:, :1] == o_p, axis=(1, 2, 3))[d_p])  # after an end: a new episode's first obs
        rewards, ends = rewards + np.abs(r_p).sum(), ends + d_p.sum()
    assert max(grey) < 4.0  # OpenCV's area filter vs PIL's bilinear: a few grey levels on average
    assert ends == 2 * E  # 50 steps per episode: the auto-reset path ran
    if game == "pitfall":
        assert rewards > 0  # the comparison covered non-zero rewards
        assert len(np.unique(pool.rooms())) >= 1


def test_pool_reset_and_step_invariants():
    pytest.importorskip("envpool")
    cfg = atari.AtariConfig(max_episode_frames=40, groups=2)  # episodes of 10 agent steps; two EnvPool instances
    pool = atari.make_vec(cfg, 4, seed=3)
    assert isinstance(pool, atari.PoolAtari) and pool.channels_first and pool.groups == 2
    obs = pool.reset()
    assert obs.shape == (4, 4, 84, 84) and obs.dtype == np.uint8
    assert np.all(obs[:, :1] == obs)  # the stack is filled with the first frame
    assert pool.rooms().tolist() == [1, 1, 1, 1]  # Montezuma's Revenge starts in room 1 of level 0
    for t in range(10):
        nxt_obs, r, done, nxt, rooms, ended = pool.step(np.zeros(4, int))
        if t == 0:
            assert np.array_equal(nxt[:, :3], obs[:, 1:])  # the stack shifts by one
        assert r.dtype == np.float32 and done.dtype == bool and rooms.dtype == np.int32
        assert done.all() == (t == 9) and len(ended) == (4 if t == 9 else 0)
    assert np.all(nxt_obs[:, :1] == nxt_obs) and not np.array_equal(nxt_obs, nxt)  # reset obs vs terminal obs
    assert pool.ep_return.tolist() == [0.0] * 4
    with pytest.raises(ParameterError, match="multiple of groups"):
        atari.make_vec(cfg, 3, seed=0)
    with pytest.raises(ParameterError, match="EnvPool task"):
        atari.PoolAtari(atari.AtariConfig(game="no_such_game"), 2, seed=0)


def _keyed_act(params, obs, keys):
    """A jitted policy whose draws depend on each environment's key only (as the agent's act)."""
    action = jax.vmap(lambda k: jax.random.randint(k, (), 0, 18))(keys)
    z = jnp.zeros(action.shape, jnp.float32)
    return action, z, z, z


def test_pipelined_collect_equals_one_group_and_the_reference():
    """Two pipelined groups give the very trajectory of one group (environment i seeded alike, one key per
    environment); and rooms, rewards, ends and episode returns equal the ale-py reference's."""
    pytest.importorskip("envpool")
    act = jax.jit(_keyed_act)
    out = {}
    for name, cfg in {
        "two": atari.AtariConfig(noop_max=1, max_episode_frames=80, groups=2),
        "one": atari.AtariConfig(noop_max=1, max_episode_frames=80, groups=1),
        "ale": atari.AtariConfig(noop_max=1, max_episode_frames=80, backend="ale"),
    }.items():
        vec = atari.make_vec(cfg, 4, seed=2)
        obs, first, key = vec.reset(), np.ones(4, bool), jax.random.PRNGKey(0)
        visited, stats = set(), {"returns": []}
        trajs = []
        for _ in range(2):  # two rollouts of 16 steps: episodes of 20 steps end inside the second one
            traj, obs, first, key = atari.collect(vec, act, None, obs, first, key, 16, visited, stats)
            trajs.append(traj)
        out[name] = ({k: np.concatenate([tr[k] for tr in trajs]) for k in trajs[0]}, visited, stats["returns"])
    two, one, ale = out["two"], out["one"], out["ale"]
    for k in two[0]:
        assert np.array_equal(two[0][k], one[0][k]), k
    assert two[1:] == one[1:]
    for k in ("action", "reward", "done", "first"):
        assert np.array_equal(two[0][k], ale[0][k]), k
    assert two[1:] == ale[1:] and len(two[2]) == 4 and two[1] == {1}
    done = two[0]["done"]
    assert done[19].all() and done.sum() == 4
    assert np.array_equal(two[0]["first"][1:], done[:-1]) and two[0]["first"][0].all()
    # layouts: (T, E, 4, 84, 84) from EnvPool, (T, E, 84, 84, 4) from ale-py; the stored next frame is the newest
    assert two[0]["obs"].shape == (32, 4, 4, 84, 84) and ale[0]["obs"].shape == (32, 4, 84, 84, 4)
    assert np.array_equal(two[0]["next_frame"][:-1][~done[:-1]], two[0]["obs"][1:, :, -1][~done[:-1]])
    assert np.abs(two[0]["next_frame"].astype(int) - ale[0]["next_frame"]).mean() < 4.0
