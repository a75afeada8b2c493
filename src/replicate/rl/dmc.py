"""DeepMind Control Suite tasks behind a tiny NumPy interface (flat observations, actions in [-1, 1]).

Compatibility shim: the locked ``dm_control`` 1.0.50 lists a few MjModel/MjData arrays
(``flex_vertedge``, ``flexvert_J``, ...) that ``mujoco`` 4 no longer has, and fails in
``Physics.from_model``. :func:`_patch_dm_control_sizes` drops the names the installed ``mujoco``
lacks from dm_control's index table before the first environment is built (nothing on disk changes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("MUJOCO_GL", "disable")

_PATCHED = False


def _patch_dm_control_sizes() -> None:
    global _PATCHED
    if _PATCHED:
        return
    import mujoco
    from dm_control.mujoco.wrapper.mjbindings import sizes

    probe = mujoco.MjModel.from_xml_string("<mujoco/>")
    for struct, obj in (("mjmodel", probe), ("mjdata", mujoco.MjData(probe))):
        for name in list(sizes.array_sizes.get(struct, {})):
            if not hasattr(obj, name):
                del sizes.array_sizes[struct][name]
    _PATCHED = True


#: Tasks we use, "domain-task" -> (domain, task). Observation / action sizes in the comments.
TASKS: dict[str, tuple[str, str]] = {
    "cartpole-balance": ("cartpole", "balance"),  # obs 5, act 1
    "cartpole-swingup": ("cartpole", "swingup"),  # obs 5, act 1
    "point_mass-easy": ("point_mass", "easy"),  # obs 4, act 2
    "reacher-easy": ("reacher", "easy"),  # obs 6, act 2
    "finger-spin": ("finger", "spin"),  # obs 9, act 2
    "walker-stand": ("walker", "stand"),  # obs 24, act 6
    "cheetah-run": ("cheetah", "run"),  # obs 17, act 6
}


@dataclass
class Step:
    obs: np.ndarray
    reward: float
    discount: float
    last: bool


class DMCEnv:
    """One dm_control task: ``reset() -> obs``; ``step(action) -> Step``; ``action_repeat`` sums rewards.

    Episodes last ``1000 / action_repeat`` agent steps (dm_control's 1000-step time limit); the
    time-limit end has ``discount = 1`` (truncation, not a terminal), as dm_control reports it.
    """

    def __init__(self, name: str, seed: int = 0, action_repeat: int = 1):
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
        if action_repeat < 1:
            raise ValueError("action_repeat must be >= 1")
        _patch_dm_control_sizes()
        from dm_control import suite

        domain, task = TASKS[name]
        self.name = name
        self.action_repeat = action_repeat
        self._env = suite.load(domain, task, task_kwargs={"random": int(seed)})
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_dim = int(spec.shape[0])
        self.obs_dim = int(sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values()))
        self.episode_length = 1000 // action_repeat

    @staticmethod
    def _flat(obs) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).ravel() for v in obs.values()])

    def reset(self) -> np.ndarray:
        return self._flat(self._env.reset().observation)

    def step(self, action: np.ndarray) -> Step:
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        a = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        reward, ts = 0.0, None
        for _ in range(self.action_repeat):
            ts = self._env.step(a)
            reward += float(ts.reward or 0.0)
            if ts.last():
                break
        discount = float(ts.discount if ts.discount is not None else 1.0)
        return Step(self._flat(ts.observation), reward, discount, bool(ts.last()))
