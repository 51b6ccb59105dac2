"""Hydra launcher `farm` (conf/hydra/launcher/farm.yaml): Hydra instantiates launchers only from the hydra_plugins
package, and imports every module here at start-up, so this one stays small and imports genlab only to launch."""
from __future__ import annotations

from typing import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn


class FarmLauncher(BasicLauncher):
    """The basic launcher, except that jobs which pack train together as seed farms (genlab.farm)."""

    def __init__(self, max_members: int = 32) -> None:
        super().__init__()
        self.max_members = max_members

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from genlab.farm.launch import launch

        return launch(self, job_overrides, initial_job_idx)
