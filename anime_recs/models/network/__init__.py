"""The original project's Keras embedding network and the paths that train it.

- :mod:`.architecture`: parameters, layers, learning-rate schedule, distribution strategy;
- :mod:`.trainer`: what every training path shares (checkpoints, epochs, batches);
- :mod:`.training`: :func:`~.training.train_model`, which picks a path: :mod:`.lazy_adam` (fast, default),
  :mod:`.keras_fit` (the original's ``model.fit``), :mod:`.distributed` (several workers);
- :mod:`.embeddings`: the trained weights as plain NumPy for the recommenders.
"""
