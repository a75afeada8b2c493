"""PAC: Perceiver actor-critic trained offline (Springenberg et al. 2024, arXiv 2402.05546).

Only the abstract, the Fig. 2 caption and secondary summaries of the paper could be read here: section,
table and figure numbers other than Fig. 2 are unverified, and every value not sourced in a docstring is ours.

Network and objective:

- :mod:`replicate.pac.perceiver` -- the Perceiver actor-critic network (as the Fig. 2 caption describes it)
- :mod:`replicate.pac.losses` -- the offline actor-critic objective; alpha = 1 is BC, alpha = 0 full RL
- :mod:`replicate.pac.train` -- jitted training loop (lax.scan, sharding-ready) and simulator evaluation

Data (notebook 30):

- :mod:`replicate.pac.experts` -- SAC experts per task: trained until flat, quality-tier snapshots, loading (stage CLI)
- :mod:`replicate.pac.convergence` -- when a learning curve has flattened (experts' length, notebook 31's update counts)
- :mod:`replicate.pac.collect` -- rolling expert snapshots out into mixed-quality per-task datasets
- :mod:`replicate.pac.offline_data` -- the dataset: on-disk schema, validated I/O, tiers, multi-task mix
- :mod:`replicate.pac.paths` -- where experts and datasets live

Runs and results (notebooks 31, 32):

- :mod:`replicate.pac.offline_peers` -- the offline-RL peers TD3+BC and IQL (same data, same evaluation)
- :mod:`replicate.pac.experiment` -- one BC/filtered-BC/PAC/peer run (BC on its own step; IQL's reward scale)
- :mod:`replicate.pac.scaling` -- isoFLOP and parametric fits (our procedure)
- :mod:`replicate.pac.analysis` -- summaries and verdict rules of notebooks 30-32
"""
