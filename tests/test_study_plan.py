"""cnmc_core.study.plan: a study is checked whole before anything is written; every mistake is
`error: ...` with exit 2 and no folder (table-driven, through the CLI)."""

from __future__ import annotations

import pytest

from cnmc_core.cli.main import main
from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.study.plan import plan_study
from conftest import make_kaggle_tree


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 6 ALL and 3 HEM labelled subjects (the preliminary set's included): 3 folds fit, 4 do not
    return make_kaggle_tree(tmp_path_factory.mktemp("study-data"), n_all=4, n_hem=2,
                            per_subject=3) / "C-NMC_Leukemia"


def test_plan_makes_one_checked_config_per_preset_fold_and_seed(data):
    plan = plan_study(["demo_scratch"], data=data, folds=3, seeds=2, epochs=1)
    assert len(plan.configs) == 6
    keys = {(c["name"], c["kfold"]["fold"], c["seed"]) for c in plan.configs}
    assert keys == {("demo_scratch", f, s) for f in range(3) for s in range(2)}
    assert all(c["split_protocol"] == "subject-kfold" and c["kfold"]["k"] == 3 for c in plan.configs)
    assert all(stage["epochs"] == 1 for c in plan.configs for stage in c["stages"])
    settings = plan.settings()
    assert settings["n_subjects"] == {"all": 6, "hem": 3} and not settings["leaky"]
    leaky = plan_study(["demo_scratch"], data=data, folds=3, protocol="image-kfold").settings()
    assert leaky["leaky"] and "leaky" in leaky["protocol_label"]


@pytest.mark.parametrize("args, message", [
    (["--folds", "2"], "'--folds' parameter must be an int in the range [3, 20]"),
    (["--folds", "4"], "needs at least 4 subjects of each class; the dataset has 3 HEM"),
    (["--seeds", "0"], "'--seeds' parameter must be an int in the range [1, 20]"),
    (["--presets", "demo_nope"], "'--presets' parameter must be one of"),
    (["--presets", "demo_scratch", "paper_scratch_d256"], "must share one input size"),
    (["--presets", "demo_scratch", "demo_scratch"], "lists a preset twice"),
    (["--protocol", "paper"], "'--protocol' parameter must be one of {'subject-kfold', 'image-kfold'}"),
    (["--backend", "slurm"], "'--backend' parameter must be one of {'local', 'ray'}"),
    (["--address", "127.0.0.1:1"], "use it with --backend ray"),
    (["--num-gpus", "1"], "use it with --backend ray"),
    (["--epochs", "0"], "--epochs"),
])
def test_study_refusals_write_nothing(data, tmp_path, capsys, args, message):
    base = {"--presets": ["demo_scratch"], "--folds": ["3"]}
    given = {}
    key = None
    for a in args:
        if a.startswith("--"):
            key = a
            given[key] = []
        else:
            given[key].append(a)
    argv = ["study", "--data", str(data), "--artifacts", str(tmp_path / "art")]
    for flag, values in {**base, **given}.items():
        argv += [flag, *values]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "art" / "studies").exists() and not (tmp_path / "art" / "runs").exists()


def test_a_missing_dataset_is_refused(tmp_path):
    with pytest.raises((ConfigError, DataError), match="does not exist"):
        plan_study(["demo_scratch"], data=tmp_path / "nowhere", folds=3)
