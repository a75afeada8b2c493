"""Data parallelism: the training step on 2 (virtual CPU) devices equals the 1-device step."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent('''
    import os, sys
    if sys.argv[1] == "2":
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    import jax, jax.numpy as jnp, numpy as np
    from replicate.pac import train
    from replicate.pac.losses import PACConfig
    from replicate.pac.perceiver import make_config
    assert len(jax.devices()) == int(sys.argv[1])
    rng = np.random.default_rng(0); n = 64
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    data = {k: jnp.asarray(v) for k, v in dict(obs=obs, next_obs=obs, obs_mask=np.ones((n, 3), bool),
        action=np.clip(obs[:, :1], -1, 1), action_mask=np.ones((n, 1), bool), reward=np.ones(n, np.float32),
        discount=np.ones(n, np.float32), task=np.zeros(n, np.int32)).items()}
    net = make_config("tiny", obs_dim=3, action_dim=1, num_tasks=1, num_action_bins=5, num_value_bins=11, v_max=10.0)
    pac = PACConfig(num_policy_samples=2); tc = train.TrainConfig(batch_size=16)
    model, s0 = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
    s, m = train.make_train_fn(model, pac, tc, 2)(s0, data, jax.random.PRNGKey(1))
    np.save(sys.argv[2], np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(s.params)]))
''')


@pytest.mark.slow
def test_two_devices_match_one(tmp_path):
    import jax

    if len(jax.devices()) != 1:
        pytest.skip("reference run needs a single-device process")
    path = tmp_path / "p2.npy"
    subprocess.run([sys.executable, "-c", SCRIPT, "2", str(path)], check=True, env=dict(os.environ),
                   timeout=600)
    ref = tmp_path / "p1.npy"
    sys_argv = sys.argv
    try:
        sys.argv = ["x", "1", str(ref)]
        exec(compile(SCRIPT, "sharding_script", "exec"), {"__name__": "ref"})
    finally:
        sys.argv = sys_argv
    np.testing.assert_allclose(np.load(ref), np.load(path), atol=1e-5)
