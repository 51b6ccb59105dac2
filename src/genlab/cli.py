"""What the entry points share: user mistakes end in one clear line, not a traceback."""
from __future__ import annotations

import functools
import os
import sys

from genlab.errors import ConfigError, DataError


def user_errors_exit_cleanly(main):
    """Turn ConfigError/DataError into `error: …` on stderr and exit code 2 (full traceback with HYDRA_FULL_ERROR=1)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ConfigError, DataError) as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
