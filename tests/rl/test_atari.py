"""Atari adapter: preprocessing shapes/dtypes, max-pooling, room ids from RAM, rollout bookkeeping."""

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
    cfg = atari.AtariConfig(max_episode_frames=40, noop_max=0)  # episodes of 10 agent steps
    vec = atari.VecAtari(cfg, 2, seed=1)
    def act(params, obs, key):  # a fixed policy: NOOP
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


def test_room_id_generalises_to_games_without_a_level_byte():
    ram = np.zeros(128, np.uint8)
    ram[1], ram[57] = 0xC4, 3  # Pitfall!: the screen byte alone; byte 57 means nothing there
    assert atari.room_id(ram, "pitfall") == 0xC4
    assert atari.ROOM_RAM["montezuma_revenge"] == atari.RoomRam(room=3, level=57, rooms_per_level=24)
    with pytest.raises(ParameterError, match="not a ROM"):
        atari.AtariEnv(atari.AtariConfig(game="no_such_game"), seed=0)


def _pitfall_right(r: int) -> int:
    """One step of Pitfall!'s screen LFSR (the screen to the right; taps 3, 4, 5, 7 into bit 0)."""
    return ((r << 1) & 0xFF) | (((r >> 3) ^ (r >> 4) ^ (r >> 5) ^ (r >> 7)) & 1)


def _pitfall_walk(direction):
    """Hold ``direction`` (jumping every third 8-frame block) on the real ROM, one raw frame at a time; return the
    room ids and the fraction of screen pixels that changed on each frame."""
    from ale_py import Action

    env = atari.AtariEnv(atari.AtariConfig(game="pitfall", noop_max=0), seed=0)
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
