"""PAC: Perceiver actor-critic trained offline (Springenberg et al. 2024, arXiv 2402.05546).

- :mod:`replicate.pac.perceiver` -- the Perceiver actor-critic network (Sec. 3.2, Fig. 2)
- :mod:`replicate.pac.losses` -- the offline actor-critic objective (Sec. 3.1); alpha = 1 is BC
- :mod:`replicate.pac.train` -- jitted training loop (lax.scan, sharding-ready) and simulator evaluation
- :mod:`replicate.pac.data` -- on-disk dataset schema, atomic writer/reader, validation, task merging
- :mod:`replicate.pac.datasets` / :mod:`replicate.pac.experts` -- SAC experts, snapshots, mixed datasets
- :mod:`replicate.pac.experiment` -- one BC/PAC run (notebooks 31, 32); :mod:`replicate.pac.scaling` -- fits
"""
