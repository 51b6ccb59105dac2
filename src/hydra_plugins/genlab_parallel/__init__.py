"""Hydra launcher `parallel` (conf/hydra/launcher/parallel.yaml): Hydra's joblib launcher, n_jobs jobs at once, with
the basic launcher's promises kept (genlab.parallel). Hydra instantiates launchers only from the hydra_plugins package
and imports every module here at start-up, so this one stays small and imports genlab only to launch."""
from __future__ import annotations

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class ParallelLauncher(JoblibLauncher):
    """JoblibLauncher whose workers run genlab's jobs as `genlab.parallel.JobInWorker`."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from genlab.parallel import JobInWorker

        super().setup(hydra_context=hydra_context, task_function=JobInWorker(task_function), config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from genlab.parallel import launch

        return launch(self, job_overrides, initial_job_idx)
