"""Compare runs: `python compare.py outputs/multirun/<dir> [--by key,...] [--baseline key=value]` (see --help)."""
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from genlab.analysis.report import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
