"""The latency model of a device + engine: a fingerprinted profile (JSON) and predictions from it, torch-free.

A :class:`~effnet.latency.profile.Profile` holds what ``effnet profile`` measured on one machine and engine (the
:class:`~effnet.latency.fingerprint.Fingerprint`: CPU model and flags, threads, engine and versions, precision,
batch), the fitted :class:`~effnet.latency.profile.LatencyModel` and the fastest engine at each batch size.
:func:`~effnet.latency.predict.predict_latency` predicts any :class:`~effnet.specs.NetworkSpec`'s latency and peak
memory from it without building the network (:mod:`effnet.latency.features` turns a spec into the model's
features). The measurement itself is :mod:`effnet.serving.profile`'s. ``docs/hardware-aware.md`` has the method.

Modules: :mod:`~effnet.latency.fingerprint`, :mod:`~effnet.latency.features`, :mod:`~effnet.latency.profile`,
:mod:`~effnet.latency.predict`. Import names from them (the package root ``effnet`` re-exports the public ones).
"""
