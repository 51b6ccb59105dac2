"""Bad and hostile input: each stops with one clear error naming the key or the file, and nothing is written as a result."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException

from genlab.data.download import extract_tar
from genlab.data.imagefolder import MAX_IMAGE_PIXELS, decode_image, read_image_split
from genlab.errors import ConfigError, DataError
from genlab.pipeline import build_datamodule, build_module, evaluate, run
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
