"""The train/val split per seed (data.split_seed) and stratified K-fold (data.folds, data.fold): stratification,
disjoint folds that cover the training set, each seed its own split unless fixed, the values refused in one line,
and eval.py rebuilding the fold a checkpoint was trained on."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from genlab.config import validate
from genlab.data.strategies import stratified_fold
from genlab.errors import ConfigError
from genlab.pipeline import build_datamodule, evaluate, run

from conftest import FAST, compose_config

DIGITS_TRAIN = 1437  # digits' fixed stratified 80/20 split: 1,437 training images


def fold_counts(labels: np.ndarray, held: list[np.ndarray]) -> dict[int, list[int]]:
    """class -> its count in each fold, sorted (which fold gets a class's extra image is the draw's business)."""
    return {int(c): sorted(int((labels[idx] == c).sum()) for idx in held) for c in np.unique(labels)}


@pytest.mark.parametrize("counts, folds", [((7, 5, 3), 3), ((10, 10, 10, 1 + 3), 4), ((4, 9), 2)])
def test_folds_are_stratified_as_sklearns_disjoint_and_cover_the_set(counts, folds):
    from sklearn.model_selection import StratifiedKFold

    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(labels)  # classes interleaved, as in a real training set
    splits = [stratified_fold(labels, folds, fold, seed=3) for fold in range(folds)]
    held = [val for _, val in splits]
    for kept, val in splits:  # kept and held out are the whole set, split once
        assert np.array_equal(np.sort(np.concatenate([kept, val])), np.arange(len(labels)))
    assert np.array_equal(np.sort(np.concatenate(held)), np.arange(len(labels)))  # the folds: disjoint, covering
    reference = [val for _, val in StratifiedKFold(folds, shuffle=True, random_state=3).split(labels, labels)]
    assert fold_counts(labels, held) == fold_counts(labels, reference)
    for c, n in enumerate(counts):  # by hand: n // K in every fold, one more in n % K of them
        assert fold_counts(labels, held)[c] == sorted([n // folds + 1] * (n % folds) + [n // folds] * (folds - n % folds))
    sizes = [len(v) for v in held]
    assert max(sizes) - min(sizes) <= 1


def test_more_folds_than_the_smallest_class_has_images_is_one_line():
    labels = np.array([0] * 5 + [1] * 2)
    assert [len(val) for _, val in (stratified_fold(labels, 2, k, 0) for k in range(2))] == [4, 3]
    with pytest.raises(ConfigError, match=r"^data.folds: got 3, expected at most 2, the training images of the "
                                          r"smallest class, 1, so that every fold holds every class$"):
        stratified_fold(labels, 3, 0, 0)


def val_images(*overrides: str, seed: int, tmp_path) -> np.ndarray:
    cfg = compose_config([*FAST, *overrides], tmp_path / "run")
    datamodule = build_datamodule(cfg.data, seed)
    datamodule.setup()
    return datamodule.val_set.images, datamodule


def test_each_seed_draws_its_own_val_split_unless_split_seed_fixes_it(tmp_path):
    one, _ = val_images(seed=1, tmp_path=tmp_path)
    two, _ = val_images(seed=2, tmp_path=tmp_path)
    assert len(one) == len(two) == 144 and not np.array_equal(one, two)  # 10 % of 1,437
    fixed = [val_images("data.split_seed=7", seed=s, tmp_path=tmp_path)[0] for s in (1, 2)]
    assert np.array_equal(*fixed)
    assert np.array_equal(val_images(seed=7, tmp_path=tmp_path)[0], fixed[0])  # split_seed=7 is seed 7's split


def test_the_folds_of_one_seed_validate_on_every_training_image_once_and_leave_the_test_set(tmp_path):
    seen = []
    _, holdout = val_images(seed=4, tmp_path=tmp_path)
    for fold in range(3):  # one seed: one partition into 3 folds (another seed draws another partition)
        images, datamodule = val_images("data.folds=3", f"data.fold={fold}", "data.val_size=0.5", seed=4,
                                        tmp_path=tmp_path)
        assert len(datamodule.train_set) + len(images) == DIGITS_TRAIN  # val_size is unused with folds
        assert np.array_equal(datamodule.test_set.images, holdout.test_set.images)
        seen += [image.tobytes() for image in images]
    # digits has a few duplicate images, so compare counts: every training image validated exactly once
    train_images = Counter(image.tobytes() for image in np.concatenate([holdout.train_set.images,
                                                                          holdout.val_set.images]))
    assert len(seen) == DIGITS_TRAIN and Counter(seen) == train_images


@pytest.mark.parametrize("overrides, message", [
    (["data.folds=1", "data.fold=0"], "data.folds: got 1, expected null or an integer >= 2"),
    (["data.folds=2.5", "data.fold=0"], "data.folds: got 2.5, expected null or an integer >= 2"),
    (["data.folds=5"], "data.fold: got None, expected an integer in [0, 4] with data.folds=5 (sweep them: "
                       "data.fold=0,1,2,3,4)"),
    (["data.folds=5", "data.fold=5"], "data.fold: got 5, expected an integer in [0, 4] with data.folds=5"),
    (["data.fold=1"], "data.fold: got 1, expected null without data.folds (set data.folds=K for K-fold)"),
    (["data.split_seed=-1"], "data.split_seed: got -1, expected null (the run's seed) or an integer in [0, 4294967295]"),
])
def test_bad_split_settings_are_one_line_naming_the_key(make_cfg, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides), cuda_available=False)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_eval_rebuilds_the_fold_a_checkpoint_was_trained_on_a_resume_keeps_it_and_a_bad_one_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_config([*FAST, "trainer.max_epochs=1", "analysis.robustness=false", "data.folds=3", "data.fold=1",
                          "data.split_seed=7", "seed=3"], run_dir)
    trained = run(cfg)
    record = json.loads((run_dir / "results.json").read_text())
    assert {k: record["data"][k] for k in ("split_seed", "folds", "fold", "val_size")} == {
        "split_seed": 7, "folds": 3, "fold": 1, "val_size": 479}  # 1,437 / 3
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert {k: saved["hyper_parameters"]["data"][k] for k in ("split_seed", "folds", "fold")} == {
        "split_seed": 7, "folds": 3, "fold": 1}
    # eval's own config says a 10 % holdout drawn with the run's seed (3); the checkpoint's fold of split seed 7 wins,
    # and train_eval, drawn from the training folds, scores as it did in training
    evaluated = evaluate(compose_config([f"ckpt_path={ckpt}"], tmp_path / "eval", config_name="eval"))
    for key in ("final/test/acc", "final/train_eval/acc", "final/train_eval/loss"):
        assert evaluated[key.removeprefix("final/")] == pytest.approx(trained[key], abs=1e-6), key
    eval_record = json.loads((tmp_path / "eval" / "eval_results.json").read_text())["data"]
    assert (eval_record["fold"], eval_record["folds"], eval_record["split_seed"], eval_record["val_size"]) == (1, 3, 7, 479)
    saved["hyper_parameters"]["data"]["fold"] = 3
    torch.save(saved, tmp_path / "hostile.ckpt")
    with pytest.raises(ConfigError) as err:
        evaluate(compose_config([f"ckpt_path={tmp_path / 'hostile.ckpt'}"], tmp_path / "eval2", config_name="eval"))
    assert str(err.value) == (f"ckpt_path: got '{tmp_path / 'hostile.ckpt'}', expected a checkpoint saved by train.py, "
                              "whose hyper_parameters.data.fold is an integer in [0, 2] with data.folds=3 (sweep them: "
                              "data.fold=0,1,2); this one's is 3 (int)")
    # a resume on another fold would train on the images it validated on
    with pytest.raises(ConfigError) as err:
        run(compose_config([*FAST, "trainer.max_epochs=2", "analysis.robustness=false", "data.folds=3", "data.fold=2",
                            "data.split_seed=7", "seed=3", "ckpt_path=last", f"resume_dir={run_dir}"], run_dir))
    assert str(err.value) == (f"ckpt_path: got '{ckpt}', expected a checkpoint of this train/val split: data.fold is 2 "
                              "here and 1 in the checkpoint (resume with the checkpoint's split, or start a new run)")
    assert json.loads((run_dir / "results.json").read_text()) == record  # the run dir as it was
    # a checkpoint from before the split was kept drew its holdout with the run's seed, as eval.py draws it again
    for key in ("split_seed", "folds", "fold"):
        del saved["hyper_parameters"]["data"][key]
    torch.save(saved, tmp_path / "older.ckpt")
    evaluate(compose_config([f"ckpt_path={tmp_path / 'older.ckpt'}"], tmp_path / "eval3", config_name="eval"))
    older = json.loads((tmp_path / "eval3" / "eval_results.json").read_text())["data"]
    assert (older["split_seed"], older["folds"], older["fold"]) == (3, None, None)
