"""The paper's method as tools: the (alpha, beta, gamma) study on Optuna, its storage and report, the step-2
scale-up with budgets, and the baselines (with Table 3). Importing this package is cheap: nothing heavy is
imported until a submodule is.
"""
