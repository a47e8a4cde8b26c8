"""The torch-free training config: the CLI's flags are built from it, values are checked, the run dir is locked."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from effnet.config.recipes import (
    OWN_DEFAULT_FIELDS,
    PAPER_MIN_EPOCHS,
    RECIPE_CHOICES,
    RECIPE_FIELDS,
    RECIPES,
)
from effnet.config.training import (
    OPTIMIZERS,
    SCHEDULE_FIELDS,
    TrainConfig,
    choose_recipe,
    recipe_warning,
    resolve_recipe,
)


def test_no_train_parser_default_differs_from_the_library():
    from effnet.cli import build_parser
    from effnet.cli.train import config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["train"])) == TrainConfig()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    dests = {a.dest: a for a in sub._actions if a.dest in fields}
    assert set(dests) == set(fields)  # one flag per field, no field without a flag
    for name, action in dests.items():
        assert action.default == fields[name].default, name
        if fields[name].metadata["choices"] is not None:
            assert tuple(action.choices) == fields[name].metadata["choices"], name


def test_no_search_parser_default_differs_from_the_library():
    from effnet.cli import build_parser
    from effnet.cli.search import config_from_args
    from effnet.config.search import SearchConfig

    assert config_from_args(build_parser().parse_args(["search"])) == SearchConfig()


def test_train_help_does_not_import_torch():
    code = (
        "import sys, io, contextlib\nfrom effnet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['train', '--help'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"width": float("inf")}, "--width must be a finite number"),
        ({"lr": "abc"}, "--lr must be a finite number, got 'abc'"),
        ({"opt": "lbfgs"}, "--opt must be one of"),
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"hflip": 1.5}, "--hflip must be in [0, 1]"),
        ({"device": "gpu"}, "--device must be auto, cpu"),
        ({"in_chans": 2}, "--in-chans must be one of 1, 3"),
        ({"resume": "yes"}, "--resume must be true or false"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_flag(changes, needle):
    with pytest.raises(ValueError) as info:
        TrainConfig(**changes)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_auto_recipe_fits_the_run_length_and_paper_is_exact():
    short, why = choose_recipe(TrainConfig(epochs=4))
    assert short == "short" and "auto -> short" in why and str(PAPER_MIN_EPOCHS) in why
    assert choose_recipe(TrainConfig(epochs=PAPER_MIN_EPOCHS))[0] == "paper"
    resolved = resolve_recipe(TrainConfig(epochs=4))
    assert (resolved.recipe, resolved.opt, resolved.schedule, resolved.warmup_epochs, resolved.bn_momentum) == (
        "short",
        "adamw",
        "cosine",
        0.3,
        0.1,
    )
    paper = resolve_recipe(TrainConfig(recipe="paper", epochs=4))
    assert {k: getattr(paper, k) for k in RECIPES["paper"]} == RECIPES["paper"]
    assert "longer than the 4-epoch run" in recipe_warning(paper)
    assert recipe_warning(resolved) is None
    # another optimizer under short keeps the paper's LR and weight decay (explicit flags mean the same)
    sgd = resolve_recipe(TrainConfig(epochs=4, opt="sgd"))
    assert (sgd.lr, sgd.weight_decay) == (RECIPES["paper"]["lr"], RECIPES["paper"]["weight_decay"])
    assert "sync_bn" in SCHEDULE_FIELDS and "output" not in SCHEDULE_FIELDS and "threads" not in SCHEDULE_FIELDS


def test_run_dir_lock_is_exclusive_names_the_holder_and_is_removed(tmp_path):
    from effnet.training.rundir import LOCK_NAME, RunDirLocked, RunLock

    run = tmp_path / "run"
    with RunLock(run):
        assert (run / LOCK_NAME).is_file()
        code = f"from effnet.training.rundir import RunLock\nRunLock({str(run)!r}).acquire()\n"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and "is in use by another effnet train run (pid" in other.stderr
        with pytest.raises(RunDirLocked, match="in use"):
            RunLock(run).acquire()
    assert not run.exists()  # created by the lock, nothing written: removed again
    run.mkdir()
    (run / "keep.txt").write_text("x")
    with RunLock(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("recipe", RECIPE_CHOICES)
@pytest.mark.parametrize("opt", (None, *OPTIMIZERS))
@pytest.mark.parametrize("progressive", (0, 3))
def test_every_recipe_resolves_every_field_the_trainer_reads(recipe, opt, progressive):
    """A resolved config needs no fallback: every recipe field has a value, except those whose None is a value."""
    for epochs in (4, PAPER_MIN_EPOCHS):
        resolved = resolve_recipe(TrainConfig(recipe=recipe, opt=opt, epochs=epochs, progressive=progressive))
        unset = [k for k in RECIPE_FIELDS if getattr(resolved, k) is None and k not in OWN_DEFAULT_FIELDS]
        assert not unset and resolved.recipe in RECIPES, (recipe, opt, epochs, unset)
        assert resolve_recipe(resolved) == resolved  # resolving twice changes nothing
    assert set(OWN_DEFAULT_FIELDS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(set(RECIPE_FIELDS) <= set(values) for values in RECIPES.values())
