"""What the entry points share: user mistakes end in one clear line, not a traceback."""
from __future__ import annotations

import functools
import os
import sys

from omegaconf import OmegaConf

from genlab.errors import ConfigError, DataError, RunFailed
from genlab.resume import run_dir_for
from genlab.training.ddp import remember_entry_script

# conf/hydra/default.yaml names the run dir with this resolver, so a resumed run writes into the run it continues.
OmegaConf.register_new_resolver("genlab_run_dir", run_dir_for, replace=True)
remember_entry_script()  # imported by the entry points at start-up, in the process the user started


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def user_errors_exit_cleanly(main):
    """User mistakes and failed runs end in one `error: …` line on stderr, not a traceback.

    Bad config or data: exit code 2. A failed run (results.json says why): exit code 1, except inside a multirun,
    where the job returns NaN so the sweep goes on and the report counts it as failed.
    `HYDRA_FULL_ERROR=1` re-raises for the full traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ConfigError, DataError, RunFailed) as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr, flush=True)
            if isinstance(err, RunFailed):
                if in_multirun():
                    return float("nan")
                raise SystemExit(1) from None
            raise SystemExit(2) from None

    return wrapper
