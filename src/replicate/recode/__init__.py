"""RECODE (Saade et al. 2023, arXiv 2305.01521): the clustering density estimator and its baselines.

- :mod:`replicate.recode.memory` -- Algorithm 1 in JAX (batched, jit-able, exact k-NN); the public
  API is re-exported here: ``RecodeConfig``, ``init``, ``reward``, ``step``, ``update``, ``run_stream``.
- :mod:`replicate.recode.reference` -- Algorithm 1 transcribed in NumPy, one embedding at a time.
- :mod:`replicate.recode.baselines` -- NGU episodic memory, RND, tabular counts, reward normalisation.
- :mod:`replicate.recode.representations` -- AP (inverse dynamics) and CASM (masked transformer).
- :mod:`replicate.recode.streams`, :mod:`replicate.recode.experiments` -- notebook 10's stream and drivers.
"""

from replicate.recode.memory import (  # noqa: F401
    RecodeConfig,
    RecodeState,
    StepOutput,
    draw_noise,
    init,
    reward,
    run_stream,
    step,
    update,
)
