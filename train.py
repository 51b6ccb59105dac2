"""Train a model: `python train.py [group=option ...] [key=value ...]` (see conf/train.yaml)."""
import hydra
from omegaconf import DictConfig

import genlab.hydra_callbacks  # noqa: F401  (registers the resolver conf/hydra/default.yaml names sweep dirs with)
from genlab.cli import one_line_hydra_errors, user_errors_exit_cleanly


@one_line_hydra_errors
@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@user_errors_exit_cleanly
def main(cfg: DictConfig) -> float | None:
    from genlab.pipeline import run  # imported here so `--help` and `--cfg` answer without loading torch

    return run(cfg).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
