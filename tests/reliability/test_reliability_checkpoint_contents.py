"""A checkpoint's contents are checked before they are used, not only loaded safely: every field a resume or eval.py
reads has the type and shape train.py saves, a resume names each setting of its network that differs from the
checkpoint's with both values, weights, optimizer state and schedule fit the run before Lightning loads them, and a
checkpoint whose bytes changed (its zip's CRC-32 fails) is passed over by a resume and refused when named. Each
refusal is one line naming the file, the field and the value, and touches nothing.

The hostile checkpoints are real ones, from a one-epoch digits run, with one field changed."""
from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from genlab.errors import ConfigError
from genlab.pipeline import evaluate, run
from genlab.resume import checkpoint_to_resume, newest_checkpoint
from genlab.training.checkpoints import read_checkpoint

from conftest import compose_config
from scripts import run_script
from test_reliability_run_dirs import cli, snapshot
from test_reliability_untrusted import QUICK


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run of simple_cnn (width 32, no norm) on digits, with epoch_000.ckpt and last.ckpt."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run(compose_config([*QUICK, "trainer.max_epochs=1"], run_dir))
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A copy of the trained run for one test to resume, refuse or damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def resume_config(run_dir: Path, *overrides: str):
    return compose_config([*QUICK, "ckpt_path=last", "trainer.max_epochs=2", *overrides], run_dir)


def eval_config(ckpt: Path, output_dir: Path):
    return compose_config([f"ckpt_path={ckpt}"], output_dir, config_name="eval")


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(ConfigError) as refused:
        call()
    return str(refused.value)


@pytest.mark.parametrize("overrides,differences", [
    (["model.width=16"], "model.width is 16 here and 32 in the checkpoint"),
    (["model.norm=batch"], "model.norm is 'batch' here and 'none' in the checkpoint"),
    (["model.width=16", "model.kernel_size=5", "model.norm=batch"],
     "model.width is 16 here and 32 in the checkpoint; model.kernel_size is 5 here and 3 in the checkpoint; "
     "model.norm is 'batch' here and 'none' in the checkpoint"),
    (["model.init=kaiming"], "model.init is 'kaiming' here and 'pytorch' in the checkpoint"),  # same shapes, other net
], ids=["width", "norm", "three_settings", "init"])
def test_a_resume_of_another_network_names_each_setting_and_both_values(run_dir, overrides, differences):
    """model.width=16 on a width-32 checkpoint was a `size mismatch` traceback, model.norm=batch on a norm-free one
    `Missing key(s) in state_dict`; the run dir stays byte for byte as it was."""
    before, ckpt = snapshot(run_dir), newest_checkpoint(run_dir)
    assert refusal(lambda: run(resume_config(run_dir, *overrides))) == (
        f"ckpt_path: got '{ckpt}', expected a checkpoint of this network: {differences} (resume with the checkpoint's "
        "settings, or start a new run)")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("overrides,expected", [
    (["optimizer.weight_decay=0"], "an optimizer state that fits this run's optimizer: the checkpoint's parameter "
     "groups hold [4, 4] parameters and this run's [8] (optimizer.weight_decay and optimizer.decay_norm_and_bias group "
     "them: resume with the checkpoint's)"),
    (["optimizer=sgd"], "a checkpoint of this run's optimizer, whose state it holds: optimizer._target_ is "
     "'torch.optim.SGD' here and 'torch.optim.AdamW' in the checkpoint (resume with the checkpoint's optimizer, or "
     "start a new run)"),
    (["scheduler=onecycle"], "a learning-rate schedule that this run's scheduler continues: the checkpoint's "
     "lr_schedulers[0] lacks total_steps, _schedule_phases (scheduler.name is 'onecycle' here and 'cosine' in the "
     "checkpoint)"),
], ids=["weight_decay_regroups", "another_optimizer", "another_schedule"])
def test_a_resume_whose_optimizer_or_schedule_cannot_take_the_saved_state_is_one_line(run_dir, overrides, expected):
    """torch refused the regrouped state with a ValueError, SGD stepped on AdamW's state into KeyError 'momentum', and
    onecycle read cosine's into KeyError 'total_steps', each after the run had started writing."""
    before, ckpt = snapshot(run_dir), newest_checkpoint(run_dir)
    assert refusal(lambda: run(resume_config(run_dir, *overrides))) == f"ckpt_path: got '{ckpt}', expected {expected}"
    assert snapshot(run_dir) == before


def setting(*keys: Any, to: Any) -> Callable[[dict], None]:
    def change(checkpoint: dict) -> None:
        *parents, last = keys
        for key in parents:
            checkpoint = checkpoint[key]
        checkpoint[last] = to
    return change


def removing(*keys: Any) -> Callable[[dict], None]:
    def change(checkpoint: dict) -> None:
        *parents, last = keys
        for key in parents:
            checkpoint = checkpoint[key]
        del checkpoint[last]
    return change


SAVED_BY_TRAIN = "a checkpoint saved by train.py, whose "
FIT = "weights that fit the network its settings build: "
# id: (change, what a resume answers, what eval.py answers): the text after "ckpt_path: got '<file>', expected ";
# None where that entry point never reads the field.
CRAFTED = {
    "hyper_parameters_list": (setting("hyper_parameters", to=[1, 2]),
                              *[SAVED_BY_TRAIN + "hyper_parameters is a dict of the run's settings; this one's is [1, 2] (list)"] * 2),
    "hyper_parameters_str": (setting("hyper_parameters", to="simple_cnn"),
                             *[SAVED_BY_TRAIN + "hyper_parameters is a dict of the run's settings; this one's is 'simple_cnn' (str)"] * 2),
    "model_str": (setting("hyper_parameters", "model", to="simple_cnn"),
                  *[SAVED_BY_TRAIN + "hyper_parameters.model is a dict of the network's build settings; this one's is "
                    "'simple_cnn' (str)"] * 2),
    "width_tensor": (setting("hyper_parameters", "model", "width", to=torch.tensor(32)),
                     *[SAVED_BY_TRAIN + "hyper_parameters.model.width is a number, a string, a boolean or null; this "
                       "one's is a tensor of shape ()"] * 2),
    "width_str": (setting("hyper_parameters", "model", "width", to="32"),
                  "a checkpoint of this network: model.width is 32 here and '32' in the checkpoint (resume with the "
                  "checkpoint's settings, or start a new run)",
                  SAVED_BY_TRAIN + "hyper_parameters.model.width is an integer >= 1; this one's is '32' (str)"),
    "num_classes": (setting("hyper_parameters", "model", "num_classes", to=9),
                    "a checkpoint of this network: the data's num_classes is 10 here and 9 in the checkpoint (resume "
                    "with the checkpoint's settings, or start a new run)",
                    FIT + "net.6.weight has shape (10, 128) in the checkpoint and (9, 128) in the network; net.6.bias "
                    "has shape (10,) in the checkpoint and (9,) in the network"),
    "no_in_channels": (removing("hyper_parameters", "model", "in_channels"),
                       *[SAVED_BY_TRAIN + "hyper_parameters.model.in_channels is an integer >= 1; this one's is None "
                         "(NoneType)"] * 2),
    "data_str": (setting("hyper_parameters", "data", to="digits"),
                 *[SAVED_BY_TRAIN + "hyper_parameters.data is a dict naming the data set it was trained on; this "
                   "one's is 'digits' (str)"] * 2),
    "weight_shape": (setting("state_dict", "net.0.0.weight", to=torch.zeros(16, 1, 3, 3)),
                     *[FIT + "net.0.0.weight has shape (16, 1, 3, 3) in the checkpoint and (32, 1, 3, 3) in the network"] * 2),
    "weight_missing": (removing("state_dict", "net.6.bias"), *[FIT + "net.6.bias is missing"] * 2),
    "weight_unexpected": (setting("state_dict", "net.9.weight", to=torch.zeros(3)),
                          *[FIT + "net.9.weight is no weight of the network"] * 2),
    "weight_int": (setting("state_dict", "net.6.bias", to=5), *[FIT + "net.6.bias is 5 (int), not a tensor"] * 2),
    "no_weights": (setting("state_dict", to={}), *[FIT + "the checkpoint holds none"] * 2),  # eval tested a random net
    "state_dict_list": (setting("state_dict", to=[1]),
                        *[SAVED_BY_TRAIN + "state_dict is a dict of tensors; this one's is [1] (list)"] * 2),
    "weights_only": (removing("optimizer_states"),
                     "a checkpoint with the state to continue training from; this one has no optimizer_states (saved "
                     "with callbacks.model_checkpoint.save_weights_only=true?): eval.py tests it, a new run trains afresh",
                     None),
    "optimizer_state_shape": (lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg=torch.zeros(16, 1, 3, 3)),
                              "an optimizer state that fits the network: the state of net.0.0.weight holds exp_avg of "
                              "shape (16, 1, 3, 3), for a parameter of shape (32, 1, 3, 3)", None),
    "optimizer_states_str": (setting("optimizer_states", to="adam"),
                             SAVED_BY_TRAIN + "optimizer_states is a list of optimizer states; this one's is 'adam' (str)",
                             None),
    "epoch_str": (setting("epoch", to="3"), SAVED_BY_TRAIN + "epoch is an epoch number; this one's is '3' (str)", None),
    "no_fit_loop": (setting("loops", to={}),  # Lightning skipped the loops and restarted at epoch 0
                    SAVED_BY_TRAIN + "loops.fit_loop is the training loop's progress; this one's is None (NoneType)", None),
    "torch_random_state": (setting("genlab_rng_states", "torch", to=torch.zeros(3, dtype=torch.uint8)),
                           SAVED_BY_TRAIN + "genlab_rng_states.torch is a torch random state as genlab saves it "
                           "(RuntimeError: Expected a CPUGeneratorImplState of size 5056 but found the input RNG state "
                           "size); this one's is a tensor of shape (3,)", None),
    "schedule_state": (setting("lr_schedulers", to=[{}]),
                       "a learning-rate schedule that this run's scheduler continues: the checkpoint's lr_schedulers[0] "
                       "lacks lr_lambdas", None),
    "sampler_position": (setting("ImageDataModule", to={"epoch": "1", "batches_done": 0}),
                         SAVED_BY_TRAIN + "ImageDataModule is {'epoch': <count>, 'batches_done': <count>} or {}; this "
                         "one's is {'epoch': '1', 'batches_done': 0} (dict)", None),
    "width_negative": (setting("hyper_parameters", "model", "width", to=-3), None,
                       SAVED_BY_TRAIN + "hyper_parameters.model.width is an integer >= 1; this one's is -3 (int)"),
    "hparams_name": (setting("hparams_name", to="model"), None,  # Lightning passed every setting as `model`
                     SAVED_BY_TRAIN + "hparams_name is 'kwargs' (as save_hyperparameters writes it); this one's is "
                     "'model' (str)"),
    "loss_str": (setting("hyper_parameters", "loss", to="x"), None,
                 SAVED_BY_TRAIN + "hyper_parameters.loss is a dict or null; this one's is 'x' (str)"),
    "no_data_name": (setting("hyper_parameters", "data", to={}), None,
                     SAVED_BY_TRAIN + "hyper_parameters.data is a dict naming the data set it was trained on; this "
                     "one's is {} (dict)"),
    "no_seed": (removing("hyper_parameters", "data", "seed"), None,
                SAVED_BY_TRAIN + "hyper_parameters.data.seed is an integer in [0, 4294967295]; this one's is None "
                "(NoneType)"),
    "seed_negative": (setting("hyper_parameters", "data", "seed", to=-1), None,
                      SAVED_BY_TRAIN + "hyper_parameters.data.seed is an integer in [0, 4294967295]; this one's is -1 (int)"),
    "train_size_str": (setting("hyper_parameters", "data", "train_size", to="abc"), None,
                       SAVED_BY_TRAIN + "hyper_parameters.data.train_size is null or an integer >= 1; this one's is "
                       "'abc' (str)"),
    "val_size_tensor": (setting("hyper_parameters", "data", "val_size", to=torch.tensor(3)), None,
                        SAVED_BY_TRAIN + "hyper_parameters.data.val_size is a number, a string or null; this one's is "
                        "a tensor of shape ()"),
    "normalization_channels": (setting("hyper_parameters", "data", "normalization", "mean", to=[0.1, 0.2, 0.3]), None,
                               SAVED_BY_TRAIN + "hyper_parameters.data.normalization is {'mean': [...], 'std': [...]}, "
                               "each with a finite number per input channel (1), std > 0; this one's is {'mean': [0.1, "
                               "0.2, 0.3], 'std': [0.376]} (dict)"),
}
CASES = [pytest.param(name, entry, id=f"{name}-{entry}") for name, answers in CRAFTED.items()
         for entry, answer in zip(("train", "eval"), answers[1:]) if answer is not None]


def crafted(trained: Path, folder: Path, change: Callable[[dict], None]) -> Path:
    """The trained run's last.ckpt with one field changed, saved in torch's real format."""
    checkpoint = copy.deepcopy(read_checkpoint(trained / "checkpoints" / "last.ckpt"))
    change(checkpoint)
    torch.save(checkpoint, folder / "crafted.ckpt")
    return folder / "crafted.ckpt"


@pytest.mark.parametrize("name,entry", CASES)
def test_a_crafted_field_is_one_line_naming_it_for_resume_and_eval(trained, tmp_path, name, entry):
    change, *answers = CRAFTED[name]
    answer = dict(zip(("train", "eval"), answers))[entry]
    ckpt = crafted(trained, tmp_path, change)
    before, output_dir = ckpt.read_bytes(), tmp_path / "out"
    config = (compose_config([*QUICK, f"ckpt_path={ckpt}", "trainer.max_epochs=2"], output_dir) if entry == "train"
              else eval_config(ckpt, output_dir))
    message = refusal(lambda: (run if entry == "train" else evaluate)(config))
    assert message == f"ckpt_path: got '{ckpt}', expected {answer}"
    assert "\n" not in message and ckpt.read_bytes() == before
    assert not output_dir.exists() or not list(output_dir.iterdir())  # nothing left behind


def test_a_checkpoint_whose_pickle_is_malformed_but_whose_crc_holds_is_one_line(tmp_path):
    """A data.pkl written so (its CRC-32 matches its bytes) that refers to an object it never stored: a KeyError from
    torch's unpickler before."""
    torch.save({"state_dict": {}}, tmp_path / "whole.ckpt")
    with zipfile.ZipFile(tmp_path / "whole.ckpt") as whole, zipfile.ZipFile(tmp_path / "bad.ckpt", "w") as bad:
        for member in whole.infolist():
            bad.writestr(member, b"\x80\x02h\x05." if member.filename.endswith("data.pkl") else whole.read(member))
    expected = f"ckpt_path: got '{tmp_path / 'bad.ckpt'}', expected a readable checkpoint: the file is corrupt or not a checkpoint"
    assert refusal(lambda: run(compose_config([*QUICK, f"ckpt_path={tmp_path / 'bad.ckpt'}"], tmp_path / "t"))) == expected
    assert refusal(lambda: evaluate(eval_config(tmp_path / "bad.ckpt", tmp_path / "e"))) == expected


def flip_a_bit_in_the_weights(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor's bytes, as a disk or a copy can: torch.load reads the file as
    if nothing happened, and the zip's CRC-32 of that member no longer matches."""
    with zipfile.ZipFile(path) as archive:
        member = max((m for m in archive.infolist() if "/data/" in m.filename), key=lambda m: m.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26:member.header_offset + 30])
    data[member.header_offset + 30 + name_length + extra_length + member.file_size // 2] ^= 0x10
    path.write_bytes(data)


def corrupted_line(ckpt: Path) -> str:
    with zipfile.ZipFile(ckpt) as archive:
        member = archive.testzip()
    return (f"ckpt_path: got '{ckpt}', expected a readable checkpoint: the file is corrupt ({member} fails its CRC-32 "
            "check: bytes changed on disk or in a copy since it was saved)")


FINAL = ("final/test/acc", "final/test/loss", "final/train_eval/loss")  # the last weights' numbers


def test_a_corrupted_newest_checkpoint_is_passed_over_by_a_resume_and_refused_when_named(run_dir, tmp_path):
    """A bit-flipped newest last.ckpt was resumed over the whole epoch_000.ckpt, and the run diverged to NaN."""
    last, whole = run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "epoch_000.ckpt"
    flip_a_bit_in_the_weights(last)
    os.utime(whole, (time.time() - 60,) * 2)
    assert torch.load(last, weights_only=True)["epoch"] == 0  # torch alone reads it as if whole
    assert newest_checkpoint(run_dir) == whole
    assert checkpoint_to_resume("last", False, None, run_dir) == whole
    assert refusal(lambda: run(compose_config([*QUICK, f"ckpt_path={last}"], tmp_path / "t"))) == corrupted_line(last)
    assert refusal(lambda: evaluate(eval_config(last, tmp_path / "e"))) == corrupted_line(last)

    # The resume itself, of a run killed after its epoch: Lightning's load (which refuses a corrupt file) gets the whole
    # checkpoint, whose weights (final/*, the resumed module's own) score as the run's did.
    recorded = json.loads((run_dir / "results.json").read_text())["metrics"]
    (run_dir / "results.json").unlink()
    metrics = run(compose_config([*QUICK, "ckpt_path=last", "trainer.max_epochs=1"], run_dir))
    assert [metrics[key] for key in FINAL] == [recorded[key] for key in FINAL]


def test_eval_of_a_weights_only_checkpoint_scores_as_the_run_did(trained, tmp_path):
    """The checks refuse what does not fit, and only that: eval.py reads no training state, so a checkpoint without
    one (save_weights_only=true) is tested, with the run's own numbers."""
    ckpt = crafted(trained, tmp_path, removing("optimizer_states"))
    metrics = evaluate(eval_config(ckpt, tmp_path / "eval"))
    recorded = json.loads((trained / "results.json").read_text())["metrics"]
    assert metrics["test/acc"] == recorded["test/acc"]


@pytest.mark.slow
def test_train_py_refuses_a_resume_of_another_width_in_one_line_and_leaves_the_run_dir_as_it_was(run_dir, tmp_path):
    before = snapshot(run_dir)
    result = cli(f"hydra.run.dir={run_dir}", "ckpt_path=last", "trainer.max_epochs=2", "model.width=16", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (  # after Lightning's "Seed set to 42"
        f"error: ckpt_path: got '{newest_checkpoint(run_dir)}', expected a checkpoint of this network: model.width is "
        "16 here and 32 in the checkpoint (resume with the checkpoint's settings, or start a new run)")
    assert "Traceback" not in result.stderr
    assert snapshot(run_dir) == before  # Hydra's .hydra/ and log, written before the check, are undone


@pytest.mark.slow
def test_eval_py_refuses_a_corrupted_checkpoint_in_one_line_and_leaves_no_run_dir(run_dir, tmp_path):
    last = run_dir / "checkpoints" / "last.ckpt"
    flip_a_bit_in_the_weights(last)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    result = run_script("eval.py", f"ckpt_path={last}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: {corrupted_line(last)}"]
    assert not list((tmp_path / "outputs" / "runs").iterdir())
