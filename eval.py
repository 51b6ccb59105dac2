"""Test a checkpoint: `python eval.py ckpt_path=<file.ckpt> [data=<its data set>]` (see conf/eval.yaml)."""
import hydra
from omegaconf import DictConfig

import genlab.hydra_callbacks  # noqa: F401  (registers the resolver conf/hydra/default.yaml names sweep dirs with)
from genlab.cli import one_line_hydra_errors, user_errors_exit_cleanly


@one_line_hydra_errors
@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@user_errors_exit_cleanly
def main(cfg: DictConfig) -> None:
    from genlab.pipeline import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
