"""RECODE (Saade et al. 2023, arXiv 2305.01521): the clustering density estimator and its baselines.

- :mod:`replicate.recode.memory` -- Algorithm 1 in JAX (batched, jit-able, exact k-NN); its API is
  re-exported here: the pure cores ``reward``, ``step``, ``update``, ``run_stream`` (jit-able, no checks)
  and their boundary twins ``checked_reward``, ``checked_step``, ``checked_update``, ``checked_run_stream``
  (validate the inputs, then call the core: what notebooks and CLIs call).
- :mod:`replicate.recode.reference` -- Algorithm 1 transcribed in NumPy, one embedding at a time.
- :mod:`replicate.recode.baselines` -- NGU's episodic memory (the paper's EMM), NGU's RND modulation (NGU proper), RND,
  tabular counts.
- :mod:`replicate.recode.representations` -- AP (inverse dynamics) and CASM (masked transformer).
- :mod:`replicate.recode.streams`, :mod:`replicate.recode.experiments` -- notebook 10's stream and drivers.
"""

from replicate.recode.memory import (  # noqa: F401
    RecodeConfig,
    RecodeState,
    StepOutput,
    checked_reward,
    checked_run_stream,
    checked_step,
    checked_update,
    draw_noise,
    init,
    reward,
    run_stream,
    step,
    update,
)
