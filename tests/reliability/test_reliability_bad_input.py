"""Bad and hostile input: each stops with one clear error naming the key or the file, and nothing is written as a result."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict

from genlab.data.download import extract_tar
from genlab.data.imagefolder import MAX_IMAGE_PIXELS, decode_image, read_image_split
from genlab.errors import ConfigError, DataError
from genlab.pipeline import evaluate, run
from genlab.resume import newest_checkpoint

from conftest import FAST, compose_config


@pytest.mark.parametrize("group", ["model", "data", "augmentation", "regularization", "experiment"])
def test_unknown_names_list_the_available_options(make_cfg, group):
    with pytest.raises(ConfigCompositionException) as err:
        make_cfg(f"{group}=nope")
    assert f"Could not find '{group}/nope'" in str(err.value)


@pytest.mark.parametrize("override,key", [("model.dropout=1.5", "model.dropout"), ("model=resnet model.depth=7", "model.depth"),
                                          ("model=vgg model.norm=bn", "model.norm")])
def test_out_of_range_model_knobs(make_cfg, tmp_path, override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: got "):
        run(make_cfg(*override.split()))
    assert not (tmp_path / "run" / "results.json").exists()


def test_an_image_size_too_small_for_the_pooling_stages(make_cfg):
    cfg = make_cfg("data=synthetic", "data.image_size=2", "model=simple_cnn")
    with pytest.raises(ConfigError, match=r"^data.image_size: got 2, expected >= 4 for simple_cnn"):
        run(cfg)


def test_eval_refuses_a_checkpoint_of_another_data_set(tmp_path):
    run(compose_config([*FAST, "trainer.max_epochs=1", "analysis.robustness=false"], tmp_path / "run"))
    cfg = compose_config([f"ckpt_path={newest_checkpoint(tmp_path / 'run')}", "data=mnist"],
                         tmp_path / "eval",
                         config_name="eval")
    with pytest.raises(ConfigError, match=r"^data: got 'mnist', expected data=digits"):
        evaluate(cfg)


def test_tar_members_escaping_the_target_are_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"pwned"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(DataError, match="refusing to extract, unsafe member"):
        extract_tar(archive, tmp_path / "data" / "inner")
    assert not list(tmp_path.rglob("escaped.txt")) and not list((tmp_path / "data" / "inner").iterdir())


def test_symlinks_out_of_an_image_folder_are_refused(tmp_path):
    from PIL import Image

    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(outside)
    cls = tmp_path / "root" / "train" / "cat"
    cls.mkdir(parents=True)
    (cls / "link.png").symlink_to(outside)
    with pytest.raises(DataError, match=r"link.png: a link to .*secret.png, outside the image folder"):
        read_image_split(tmp_path / "root" / "train", ["cat"], 8, 1)


def test_huge_images_are_refused_from_their_header(tmp_path):
    from PIL import Image

    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path)  # 1-bit: a few KB on disk, 40+ MP once decoded
    with pytest.raises(DataError, match=rf"bomb.png: {side}x{side} pixels, more than"):
        decode_image(path, 8, 1)


@pytest.mark.parametrize("override,refused", [
    ("seed=-1", r"seed: got -1, expected an integer in \[0, 4294967295\]"),
    ("seed=99999999999", r"seed: got 99999999999, expected an integer in \[0, 4294967295\]"),
    ("optimizer.lr=inf", r"optimizer.lr: got inf, expected a number > 0"),
    ("trainer.strategy=ddp_spawn", r"trainer.strategy: got 'ddp_spawn', expected ddp \(trainer=ddp"),
    ("data.train_size=5", r"data.train_size: got 5, expected at least 10 training images, one per class"),
    ("logger=wandb logger.wandb.project=team/proj", r"logger.wandb.project: got 'team/proj', expected a W&B project name"),
    ("logger=wandb logger.wandb.entity='my team'", r"logger.wandb.entity: got 'my team', expected null"),
])
def test_bad_values_are_one_line_before_anything_runs(make_cfg, tmp_path, override, refused):
    with pytest.raises(ConfigError, match=rf"^{refused}"):
        run(make_cfg(*override.split(" ", 1) if override.startswith("logger") else [override]))
    assert not (tmp_path / "run" / "results.json").exists()


def test_the_shared_keys_files_are_no_option_of_their_group(make_cfg):
    """model=_common ran as a model without a name (a traceback in build_model); the files of shared keys now live
    beside the groups, so no group lists them as an option, and a model config without a name is refused."""
    for group in ("model", "data", "augmentation", "regularization"):
        with pytest.raises(ConfigCompositionException) as err:
            make_cfg(f"{group}=nope")
        assert "_common" not in str(err.value) and f"Could not find '{group}/nope'" in str(err.value)
        assert "_baseline" not in str(err.value)  # regularization's shared switch-offs are no preset either
    cfg = make_cfg()
    with open_dict(cfg):
        del cfg.model["name"]
    with pytest.raises(ConfigError, match=r"^model: got 'a model config without a name', expected one of \['alexnet'"):
        run(cfg)


def test_cifar_batches_whose_labels_are_numpy_ints_load(tmp_path):
    import pickle

    from genlab.data.cifar import read_cifar_batches

    labels = [np.int64(i % 10) for i in range(12)]
    batch = {b"labels": labels, b"data": np.zeros((12, 3072), np.uint8), b"batch_label": b"re-saved"}
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    images, read = read_cifar_batches([tmp_path / "data_batch_1"], b"labels", 10)
    assert images.shape == (12, 32, 32, 3) and read.tolist() == [i % 10 for i in range(12)]


def test_compare_skips_counts_and_names_a_cut_off_results_json(tmp_path, capsys):
    import json

    import yaml

    from genlab.analysis.report import main as compare

    for i, (seed, acc) in enumerate([(1, 0.90), (2, 0.92), (3, 0.91)]):
        run_dir = tmp_path / "sweep" / str(i)
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": "completed", "seed": seed,
                                                          "metrics": {"test/acc": acc, "final/test/acc": acc}}))
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "model": {"name": "simple_cnn"}}))
    cut = tmp_path / "sweep" / "3"
    cut.mkdir()
    (cut / "results.json").write_text('{"schema_version": 1, "status": "compl')  # a kill while it was written
    out = compare([str(tmp_path / "sweep")])
    assert f"warning: skipped 1 run dir whose results.json is cut off or not a JSON record: {cut}" in capsys.readouterr().err
    assert "3 runs" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv,expected", [
    (["model=nope"], "model: got 'nope', expected one of ['alexnet', 'googlenet',"),
    (["seed=3", "model=_common"], "model: got '_common', expected one of ['alexnet',"),
    (["-m", "regularization=none,dropuot"], "regularization: got 'dropuot', expected one of ['all', 'asam', 'batchnorm',"),
    (["+model=resnet", "data=cifar10", "model.depth=20"], None),
    (["-m", "experiment=glob(*)", "debug=fdr"], None),  # Hydra's sweep syntax is Hydra's to read
    (["hydra/launcher=submitit_local"], None),           # a plugin's option, not a file of conf/
    (["--config-dir", "/x/.hydra", "model=mine"], None),  # another config dir may add options
])
def test_an_unknown_group_option_is_named_in_one_line_with_the_options(argv, expected):
    from genlab.cli import unknown_option

    from conftest import CONF_DIR

    wrong = unknown_option(argv, CONF_DIR)
    assert (None if wrong is None else str(wrong)[:len(expected)]) == expected
