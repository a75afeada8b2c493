"""Generic Flax networks shared by the papers' agents and estimators (no paper-specific code here).

- :mod:`replicate.nn.mlp` -- :class:`~replicate.nn.mlp.MLP`, a ReLU multi-layer perceptron (RND's target and
  predictor, the AP/CASM encoders and classifiers of RECODE).
- :mod:`replicate.nn.actor_critic` -- PPO actor-critics with RND's two value heads: the MLP
  :class:`~replicate.nn.actor_critic.ActorCritic` (vector observations) and the Nature-CNN
  :class:`~replicate.nn.actor_critic.NatureActorCritic` (Atari frames).
"""
