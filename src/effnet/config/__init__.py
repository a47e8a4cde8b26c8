"""Every user-settable choice and default of effnet (torch-free), one module per area.

:mod:`~effnet.config.fields` (typed settings and their checks), :mod:`~effnet.config.training`,
:mod:`~effnet.config.recipes`, :mod:`~effnet.config.augment`, :mod:`~effnet.config.progressive`,
:mod:`~effnet.config.search`, :mod:`~effnet.config.scale`, :mod:`~effnet.config.curves`,
:mod:`~effnet.config.serving`, :mod:`~effnet.config.inference` and :mod:`~effnet.config.tables`; every command builds
its flags from them (:mod:`effnet.cli.flags`).
"""
