"""PAC: Perceiver actor-critic trained offline (Springenberg et al. 2024, arXiv 2402.05546).

Network and objective:

- :mod:`replicate.pac.perceiver` -- the Perceiver actor-critic network (Sec. 3.2, Fig. 2)
- :mod:`replicate.pac.losses` -- the offline actor-critic objective (Sec. 3.1); alpha = 1 is BC
- :mod:`replicate.pac.train` -- jitted training loop (lax.scan, sharding-ready) and simulator evaluation

Data (notebook 30):

- :mod:`replicate.pac.experts` -- SAC experts per task: training, quality-tier snapshots, loading (stage CLI)
- :mod:`replicate.pac.collect` -- rolling expert snapshots out into mixed-quality per-task datasets
- :mod:`replicate.pac.offline_data` -- the dataset: on-disk schema, validated I/O, tiers, multi-task mix
- :mod:`replicate.pac.paths` -- where experts and datasets live

Runs and results (notebooks 31, 32):

- :mod:`replicate.pac.experiment` -- one BC/PAC run; :mod:`replicate.pac.scaling` -- isoFLOP and parametric fits
- :mod:`replicate.pac.analysis` -- summaries and verdict rules of notebooks 30-32
"""
