"""The real entry points as a user runs them: train.py, then eval.py on its checkpoint, and one bad value."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from scripts import run_script


SECRET = "dummy0123456789abcdef0123456789abcdef9999"  # a W&B key that must never be written anywhere


def with_key() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_API_KEY": SECRET}


def start_fresh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python script args` as a user starts it: a new interpreter, whose imports may print warnings too (the other
    tests fork their runs from a server that has done the imports: see scripts.py). Its stdout and stderr go to one
    file, as nohup or SLURM keep them: not a terminal."""
    return subprocess.run([sys.executable, str(REPO / args[0]), *args[1:]], cwd=cwd, env=with_key(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


EPOCH_LINE = re.compile(r"epoch (\d+)/1  train/loss \d\.\d{4}  train/acc \d\.\d{4}  val/loss \d\.\d{4}  val/acc \d\.\d{4}  "
                        r"\d+\.\d s")


@pytest.mark.slow
def test_train_then_eval_reproduces_the_test_accuracy(tmp_path):
    trained = start_fresh("train.py", "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    log = trained.stdout
    assert trained.returncode == 0, log[-3000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "Run summary" in log and "test accuracy" in log
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))  # the default logger: W&B, offline here
    # No surprises: a default run prints no warning, neither Python's (path:line: message) nor W&B's.
    assert not re.search(r"\.py:\d+: |wandb: WARNING", log), log[-3000:]
    # What a person reads in a log (issue 15): one line per epoch, the run dir whole on its own line, no advertising
    epochs = [m.group(1) for m in (EPOCH_LINE.fullmatch(line) for line in log.splitlines()) if m]
    assert epochs == ["0", "1"], log[-3000:]
    assert f"outputs: {tmp_path / 'run'}" in log.splitlines()
    for noise in ("v_num", "Tip:", "litlogger", "Run history", "Run summary:"):  # W&B's footer says the last two
        assert noise not in log, noise
    evaluated = run_script("eval.py", f"ckpt_path={record['best_checkpoint']}", f"hydra.run.dir={tmp_path / 'eval'}",
                           cwd=tmp_path, env=with_key())
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    eval_output = evaluated.stdout + evaluated.stderr
    assert "Tip:" not in eval_output and "litmodels" not in eval_output
    # and no warning (a W&B table that could not be staged once warned here)
    assert not re.search(r"\.py:\d+: ", eval_output), evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert again["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert again["metrics"]["train_eval/acc"] == pytest.approx(record["metrics"]["train_eval/acc"], abs=1e-6)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10 and not [p for p in written if SECRET.encode() in p.read_bytes()]


def test_bad_value_stops_with_one_line_and_no_traceback(tmp_path):
    result = run_script("train.py", "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=with_key())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: optimizer.lr: got -1, expected a number > 0"
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "results.json").exists()
