"""The paper's method as tools: step 1, the (alpha, beta, gamma) search, and step 2, the scale-up with budgets.

Step 1: the candidates (``grid``), the Optuna study (``study``) in its storage (``storage``), the Optuna worker
that trains one trial after another (``worker``, with the ``halving`` pruner), the run of a study (``run``), local
worker processes (``jobs``, ``processes``), the report and its statistics (``report``, ``stats``) and the scaling
curves of the paper's Figures 3 and 8 (``curves``). Step 2: the scaled family and its budgets (``scaleup``), the
measurement of one network (``measure``) in interleaved rounds (``rounds``). The baselines and Table 3:
``baselines``. Importing this package is cheap: nothing heavy is imported until a submodule is.
"""
