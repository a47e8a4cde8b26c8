"""Training a model: data and loaders, optimizers and schedules, EMA, the device, the training state, one epoch, the
epoch loop, progressive learning, DDP, checkpoints, weights, the run directory, the run, the trainer (``fit``).

Imports models/, serving's preprocessing and the core.
"""
