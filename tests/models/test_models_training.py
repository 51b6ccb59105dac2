"""The zoo in the platform: configs compose and validate, the module trains aux heads, runs finish, diagnostics log."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlab.config import MODEL_RUN_KEYS, validate
from genlab.data.catalog import dataset_info
from genlab.models import available_models, build_model, model_knobs
from genlab.pipeline import run
from genlab.training.callbacks import network_blocks
from genlab.training.module import ImageClassifier

from conftest import CONF_DIR


# Small enough for a one-epoch digits run in a few seconds on a CPU.
SMALL = {
    "simple_cnn": [],
    "lenet5": [],
    "alexnet": ["model.width=4", "model.hidden=32"],
    "vgg": ["model.depth=11", "model.width=4"],
    "googlenet": ["model.width=0.0625"],
    "resnet": ["model.depth=20", "model.width=4"],
    "preact_resnet": ["model.width=4"],
    "wide_resnet": ["model.depth=10", "model.width=0.5"],
}
MODEL_YAMLS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if not p.stem.startswith("_"))  # _common: shared keys


def test_there_is_one_yaml_per_family():
    assert MODEL_YAMLS == available_models() == sorted(SMALL)


@pytest.mark.parametrize("family", MODEL_YAMLS)
def test_model_yaml_composes_validates_and_mirrors_the_builder_defaults(make_cfg, family):
    cfg = make_cfg(f"model={family}")
    validate(cfg, cuda_available=False)
    values = {k: v for k, v in cfg.model.items() if k != "name" and k not in MODEL_RUN_KEYS}
    assert cfg.model.name == family and values == model_knobs(family)  # every knob in the YAML, same defaults
    assert {k: cfg.model[k] for k in MODEL_RUN_KEYS} == {"channels_last": False, "compile": False}
    lines = (CONF_DIR / "model" / f"{family}.yaml").read_text().splitlines()
    undocumented = [line for line in lines if re.match(r"^\w+:", line) and not line.startswith(("name:", "defaults:"))
                    and "#" not in line]
    assert not undocumented
    info = dataset_info(cfg.data.name)
    with torch.device("meta"):
        build_model(family, info.channels, info.num_classes, info.image_size, **values)


def test_the_module_adds_the_weighted_aux_losses():
    spec = {"name": "googlenet", "in_channels": 1, "num_classes": 10, "image_size": 8, "width": 1 / 16, "aux_weight": 0.3}
    module = ImageClassifier(model=spec, optimizer={}, scheduler={}, data={"name": "digits", "seed": 0}).train()
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    loss = module.training_step((images, labels), 0)
    torch.manual_seed(1)  # same dropout masks
    out = module.net(images)
    main, aux = F.cross_entropy(out.logits, labels), [F.cross_entropy(a, labels) for a in out.aux]
    assert len(aux) == 2 and module.hparams.model["aux_weight"] == 0.3
    assert loss.item() == pytest.approx((main + 0.3 * (aux[0] + aux[1])).item(), rel=1e-6)
    assert loss.item() > main.item()


def test_diagnostic_blocks_open_containers_of_blocks():
    net = build_model("resnet", 3, 10, 32, depth=20, width=2)
    assert list(network_blocks(net)) == ["stem", *[f"blocks.{i}" for i in range(9)], "head"]
    googlenet = build_model("googlenet", 3, 10, 32, width=1 / 16)
    assert "inceptions.4e" in network_blocks(googlenet) and "aux_heads.4a" in network_blocks(googlenet)


def metrics_rows(cfg) -> list[dict[str, str]]:
    return list(csv.DictReader(open(Path(cfg.paths.output_dir) / "metrics.csv")))


@pytest.mark.parametrize("family", [pytest.param(f, marks=[pytest.mark.slow] if f == "googlenet" else []) for f in sorted(SMALL)])
def test_one_epoch_digits_run_finishes(make_cfg, family):
    extra = {"googlenet": ["callbacks.grad_stats.enabled=true", "callbacks.grad_stats.every_n_steps=5"]}.get(family, [])
    cfg = make_cfg(f"model={family}", *SMALL[family], *extra, "trainer.max_epochs=1")
    metrics = run(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["model"]["name"] == family and record["model"]["params"] > 0 and record["model"]["flops"] > 0
    if family == "googlenet":
        columns = set(metrics_rows(cfg)[0])
        assert "train/aux_loss_epoch" in columns
        assert {"grad_norm/stem", "act_mean/inceptions.3a", "act_std/head", "grad_norm/aux_heads.4d"} <= columns
        logged = [row for row in metrics_rows(cfg) if row.get("grad_norm/stem")]
        assert [int(row["step"]) for row in logged] == [0, 5, 10, 15, 20]
