"""replicate: reproducible JAX replications of three DeepMind papers.

Sub-packages, one per paper, plus shared parts:

- :mod:`replicate.recode`  -- RECODE clustering density estimator, baselines, AP/CASM (Saade et al. 2023)
- :mod:`replicate.glasses` -- "Transformers need glasses!" theory, synthetic transformers, Gemma 3 (Barbero et al. 2024)
- :mod:`replicate.pac`     -- Perceiver actor-critic trained offline (Springenberg et al. 2024)
- :mod:`replicate.rl`, :mod:`replicate.nn` -- shared RL and network building blocks
- :mod:`replicate.params`, :mod:`replicate.pipeline`, :mod:`replicate.plotting`,
  :mod:`replicate.metrics`, :mod:`replicate.runinfo`, :mod:`replicate.rng`, :mod:`replicate.io`
  -- the notebook pipeline and its helpers.
"""

__version__ = "0.1.0"
