"""The test fork server (tests/scripts.py) starts scripts that behave as `python script.py` processes would."""
from __future__ import annotations

import json
from pathlib import Path

from scripts import run_script

PROBE = """
import json, multiprocessing, os, sys
from wandb.sdk.data_types._private import MEDIA_TMP  # made when W&B is imported: by the server, for a forked script
print(json.dumps({"media_dir": MEDIA_TMP.name, "media_dir_exists": os.path.isdir(MEDIA_TMP.name),
                  "start_method": multiprocessing.get_start_method(), "argv": sys.argv[1:]}))
"""


def probe(tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    result = run_script(str(script), *args, cwd=tmp_path, check=True)
    return json.loads(result.stdout)


def test_each_script_has_temp_dirs_of_its_own_and_the_platforms_start_method(tmp_path):
    # The first forked script to exit once deleted W&B's media staging dir for every later one (their tables failed),
    # and scripts started their loader workers the fork server's way (a fresh server and ~6 s of imports each).
    first, second = probe(tmp_path, "1"), probe(tmp_path, "2")
    assert first["media_dir_exists"] and second["media_dir_exists"] and first["media_dir"] != second["media_dir"]
    assert not Path(first["media_dir"]).exists()  # removed when its script exited, as a process's own would be
    assert first["start_method"] == second["start_method"] == "fork" and second["argv"] == ["2"]
