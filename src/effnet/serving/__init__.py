"""Using a model: the one preprocessing implementation, predict/eval loops, inference runtimes and export.

Imports models/ and the core; training/ imports its preprocessing.
"""
