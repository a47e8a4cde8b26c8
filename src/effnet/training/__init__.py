"""Training a model: data and transforms, optimizers and schedules, EMA, recipes, the trainer, checkpoints.

Imports models/, serving's preprocessing and the core.
"""
