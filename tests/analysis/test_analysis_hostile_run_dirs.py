"""compare.py trusts no run dir: a results.json, config.yaml, metrics.csv or sweep file of the wrong shape, a FIFO, a
link to a device or nowhere, binary garbage or a huge file is one warning line naming the run (or sweep) and why,
never a traceback, a hang or a silent drop, and the run dirs are left as they were. Bad arguments, a report folder
that is a run dir, a file or a filesystem root, and W&B without a key or a network are one `error:` line, exit
code 2, with nothing written."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_analysis_report import sweep, write_run  # noqa: F401  (sweep: a fixture of 4 completed runs and 1 failed)

from genlab.analysis.compare_args import WANDB_TIMEOUT_S, Refusal, report_dir
from genlab.analysis.report import main
from genlab.sweep import Plan

from conftest import CONF_DIR
from scripts import run_script

REPORT_FILES = {"report.md", "report.html", "report.csv", "report.tex"}


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """The report without its figures (test_analysis_report_pictures.py's subject), a second or more each."""
    monkeypatch.setattr("genlab.analysis.report.write_figures", lambda *args: [])


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `root` (links not followed) with its mode, size and modification time."""
    return {str(p.relative_to(root)): (st.st_mode, st.st_size, st.st_mtime_ns)
            for p in sorted(root.rglob("*")) for st in [p.lstat()]}


def reported(sweep: Path, capsys, *options: str) -> tuple[list[str], str]:
    """compare.py on the sweep: its stderr lines and report.md, once the run dirs are checked to be untouched (the
    report's own files are all that is new)."""
    before = listing(sweep)
    out = main([str(sweep), *options])
    after = listing(sweep)
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) <= REPORT_FILES
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines(), (out / "report.md").read_text()


def edit_record(**changes):
    """A change to results.json: a key set, or removed when its value is None."""
    def edit(run_dir: Path) -> None:
        record = json.loads((run_dir / "results.json").read_text())
        record.update(changes)
        (run_dir / "results.json").write_text(json.dumps({k: v for k, v in record.items() if v is not None}))
    return edit


def replace(name: str, content: str | bytes):
    def edit(run_dir: Path) -> None:
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return edit


def fifo(name: str):
    def edit(run_dir: Path) -> None:
        (run_dir / name).unlink(missing_ok=True)
        os.mkfifo(run_dir / name)  # a plain read of it waits forever for a writer
    return edit


def link(name: str, target: str):
    def edit(run_dir: Path) -> None:
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).symlink_to(target)
    return edit


def directory(name: str):
    def edit(run_dir: Path) -> None:
        (run_dir / name).unlink()
        (run_dir / name).mkdir()
    return edit


def huge(name: str):
    def edit(run_dir: Path) -> None:
        with open(run_dir / name, "wb") as file:
            file.truncate(2**30)  # sparse: 1 GiB to the reader, nothing on disk
    return edit


BINARY = bytes(range(256)) * 8  # no UTF-8: 0x80 cannot start a character
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))  # 9^9 x's once expanded

SKIPPED = [  # (how the run dir is damaged, why the warning says it was skipped)
    (replace("results.json", '{"schema_version": 1, "status": "compl'), "results.json is cut off or not a JSON record"),
    (replace("results.json", "[0.9, 0.91]"), "results.json is [0.9, 0.91], not a JSON record"),
    (replace("results.json", BINARY), "results.json is binary, not UTF-8 text"),
    (fifo("results.json"), "results.json is a FIFO (named pipe), not a regular file"),
    (link("results.json", "/dev/zero"), "results.json is a character device, not a regular file"),
    (link("results.json", "nowhere.json"), "results.json is a broken symbolic link"),
    (link("results.json", "results.json"), "results.json is a loop of symbolic links"),
    (directory("results.json"), "results.json is a directory, not a regular file"),
    (huge("results.json"), "results.json is 1 GiB, more than genlab writes (the limit is 64 MiB)"),
    (edit_record(schema_version=2), "results.json has schema_version 2, and this genlab reads version 1"),
    (edit_record(schema_version="1"), "results.json has schema_version '1', and this genlab reads version 1"),
    (edit_record(schema_version=None), "results.json has no schema_version"),
    (edit_record(status=["completed"]), "results.json's status is ['completed'], expected one of completed, failed, "
                                        "interrupted"),
    (edit_record(metrics=[0.97]), "results.json's metrics is [0.97], expected a mapping of names to numbers"),
    (edit_record(metrics={"test/acc": "0.97"}), "results.json's metrics test/acc is '0.97', expected a number"),
    (edit_record(metrics={"test/acc": True}), "results.json's metrics test/acc is True, expected a number"),
    (edit_record(per_class_acc="all"), "results.json's per_class_acc is 'all', expected a mapping of names to numbers"),
    (edit_record(seed="3"), "results.json's seed is '3', expected a whole number"),
    (edit_record(git=["abc"]), "results.json's git is ['abc'], expected a mapping (commit, dirty)"),
    (edit_record(git={"commit": 123}), "results.json's git.commit is 123, expected a commit hash"),
    (replace("config.yaml", "- seed\n- model\n"), "config.yaml is ['seed', 'model'], not a mapping of config keys"),
    (replace("config.yaml", "just words"), "config.yaml is 'just words', not a mapping of config keys"),
    (replace("config.yaml", ""), "config.yaml is empty"),
    (replace("config.yaml", "seed: 3\nmodel: {dropout: [0.5\n"), "config.yaml is not YAML (line 3, column 1: "),
    (replace("config.yaml", "seed: !!python/object/apply:os.system [touch pwned]\n"),
     "config.yaml is not YAML (line 1, column 7: could not determine a constructor for the tag"),
    (replace("config.yaml", LAUGHS), "config.yaml is not YAML (line 2, column 8: an alias (*name), which genlab's "
                                     "config.yaml never has)"),
    (replace("config.yaml", "seed: 3\nmodel: {dropout: .inf}\n"), "config.yaml's model.dropout is not a finite number"),
    (replace("config.yaml", BINARY), "config.yaml is binary, not UTF-8 text"),
    (fifo("config.yaml"), "config.yaml is a FIFO (named pipe), not a regular file"),
    (lambda run_dir: (run_dir / "config.yaml").unlink(), "config.yaml is missing"),
]


@pytest.mark.parametrize("damage,why", SKIPPED, ids=[why.split(" (")[0][:48] for _, why in SKIPPED])
def test_a_run_dir_whose_record_or_config_is_not_genlabs_is_skipped_in_one_line(sweep, capsys, damage, why):
    hostile = write_run(sweep, "h", 0.5, 3, 0.97)
    damage(hostile)
    lines, report = reported(sweep, capsys)
    (line,) = [line for line in lines if str(hostile) in line]
    # `why` may end where the parser's own words follow
    assert line.startswith(f"warning: skipped 1 run dir whose {why}") and line.endswith(f": {hostile}"), line
    assert "5 runs" in report and f"whose {why}" in report  # the report says what it left out
    assert not (sweep.parent / "pwned").exists() and not Path("pwned").exists()


def test_a_run_dir_named_with_a_newline_is_named_on_one_line(sweep, capsys):
    replace("results.json", "[]")(write_run(sweep, "h\nx", 0.5, 3, 0.97))
    lines, _ = reported(sweep, capsys)
    assert f"warning: skipped 1 run dir whose results.json is [], not a JSON record: {sweep}/h\\nx" in lines


NOTED = [  # (damage, the note: the run is kept, without what could not be read)
    (edit_record(metrics={"test/acc": float("nan"), "gap/acc": 0.02}),
     "results.json's metrics test/acc is NaN or infinite: left out of its metrics"),
    (replace("metrics.csv", "epoch,step,val/acc\n0,9,0.5\n1,19,abc\n"),
     "metrics.csv line 3: val/acc is 'abc', not a number: its learning curves are left out"),
    (replace("metrics.csv", "epoch,step,val/acc\n0,9,0.5,7\n"),
     "metrics.csv line 2 has more cells than its header: its learning curves are left out"),
    (replace("metrics.csv", "epoch,step,val/acc\nnan,9,0.5\n"),
     "metrics.csv line 2: epoch is 'nan', not a whole number: its learning curves are left out"),
    (replace("metrics.csv", "epoch,step\n0," + "9" * 200_000 + "\n"),
     "metrics.csv line 2: field larger than field limit (131072): its learning curves are left out"),
    (replace("metrics.csv", bytes(4096)), "metrics.csv is binary, not UTF-8 text: its learning curves are left out"),
    (replace("metrics.csv", BINARY), "metrics.csv is binary, not UTF-8 text: its learning curves are left out"),
    (fifo("metrics.csv"), "metrics.csv is a FIFO (named pipe), not a regular file: its learning curves are left out"),
    (huge("metrics.csv"), "metrics.csv is 1 GiB, more than genlab writes (the limit is 256 MiB): its learning curves "
                          "are left out"),
    (fifo("wandb_run_id"), "wandb_run_id is a FIFO (named pipe), not a regular file: its W&B record is unknown"),
    (replace("wandb_run_id", "abc\ndef\n"), "wandb_run_id is 'abc\\ndef', not a W&B run id: its W&B record is unknown"),
]


@pytest.mark.parametrize("damage,note", NOTED, ids=[note.split(":")[0][:48] for _, note in NOTED])
def test_a_nan_metric_or_an_unreadable_curve_file_is_left_out_of_the_run_in_one_line(sweep, capsys, damage, note):
    hostile = write_run(sweep, "h", 0.5, 3, 0.97)
    damage(hostile)
    lines, report = reported(sweep, capsys)
    assert [line for line in lines if str(hostile) in line] == [f"warning: run {hostile}: {note}"]
    assert "6 runs" in report and note in report


def genlab_sweep(sweep: Path) -> Path:
    """The fixture's run dirs as a genlab sweep: Hydra's multirun.yaml, the plan, each job's overrides."""
    (sweep / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    Plan(len(jobs), [[f"job={job.name}"] for job in jobs]).write(sweep)
    for job in jobs:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"job={job.name}"]))
    return sweep


SWEEP_FILES = [  # (what in the sweep dir is damaged, why its jobs are not counted)
    (fifo("sweep_jobs.yaml"), "sweep_jobs.yaml is a FIFO (named pipe), not a regular file"),
    (replace("sweep_jobs.yaml", "[1, 2"), "sweep_jobs.yaml is not a plan of at most 100000 jobs (count, jobs)"),
    (replace("sweep_jobs.yaml", "count: 1000000000\njobs: null\n"),
     "sweep_jobs.yaml is not a plan of at most 100000 jobs (count, jobs)"),
    (fifo("0/.hydra/overrides.yaml"), "0/.hydra/overrides.yaml is a FIFO (named pipe), not a regular file"),
    (huge("0/.hydra/overrides.yaml"),
     "0/.hydra/overrides.yaml is 1 GiB, more than genlab writes (the limit is 64 MiB)"),
    (replace("0/.hydra/overrides.yaml", "[seed=1"), "the files there are not a genlab sweep's (while parsing a flow"),
    (replace("0/.hydra/overrides.yaml", "5"),
     "the files there are not a genlab sweep's ('int' object is not iterable)"),
    (lambda sweep: (sweep / "²").mkdir(), "the files there are not a genlab sweep's (invalid literal for int() with "
                                          "base 10: '²')"),
]


@pytest.mark.parametrize("damage,why", SWEEP_FILES, ids=[why[:48] for _, why in SWEEP_FILES])
def test_hostile_files_of_a_sweep_dir_are_one_line_naming_the_sweep(sweep, capsys, damage, why):
    damage(genlab_sweep(sweep))
    lines, report = reported(sweep, capsys)
    (line,) = [line for line in lines if f"sweep {sweep}" in line]
    assert line.startswith(f"warning: sweep {sweep}: its jobs are not counted: {why}")
    assert "5 runs" in report


def test_an_intact_sweep_still_counts_its_jobs(sweep, capsys):
    lines, _ = reported(genlab_sweep(sweep), capsys)
    assert [line for line in lines if "sweep" in line] == [
        f"warning: sweep {sweep}: 1 of 5 jobs have no completed record (1 failed); the sweep's own command with "
        "hydra.sweep.dir=<that dir> ckpt_path=last continues it"]


def test_links_to_run_dirs_count_and_links_to_other_folders_are_named(sweep, tmp_path, capsys):
    elsewhere = write_run(tmp_path / "elsewhere", "r", 0.0, 3, 0.91)
    (sweep / "linked").symlink_to(elsewhere)
    (sweep / "root").symlink_to("/")  # followed, it would have the whole disk searched
    out = main([str(sweep), "--out", str(tmp_path / "report")])
    assert "6 runs" in (out / "report.md").read_text()
    assert [line for line in capsys.readouterr().err.splitlines() if "symbolic link" in line] == [
        f"warning: not followed: 1 symbolic link to folders under {sweep} ({sweep / 'root'}); name them, or a glob "
        "of them, to compare the runs there"]


def test_a_config_holding_a_list_of_mappings_groups(sweep, capsys):
    for run_dir in sweep.iterdir():  # a custom augmentation policy: a list of transforms, each a mapping
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["augmentation"] = {"transforms": [{"_target_": f"T{config['model']['dropout']}", "p": 0.5}]}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    _, report = reported(sweep, capsys)
    assert 'augmentation.transforms=[{"_target_": "T0.5", "p": 0.5}]' in report


def refused(argv: list[str], capsys, root: Path) -> str:
    """The one line compare.py refuses `argv` with (exit code 2), once nothing under `root` has changed."""
    before = listing(root)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and listing(root) == before
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


REFUSED = [  # (arguments, given the sweep and tmp_path, and the start of the one line that refuses them)
    (lambda s, t: [s, "--baseline", "foo"], "error: argument --baseline: got 'foo', expected key=value[,key=value] "
                                            "with each key once"),
    (lambda s, t: [s, "--baseline", "=0.5"], "error: argument --baseline: got '=0.5', expected key=value"),
    (lambda s, t: [s, "--baseline", "model.dropout=0.5,model.dropout=0.0"], "error: argument --baseline: got"),
    (lambda s, t: [s, "--baseline", "model.dropout=0.3"], "error: --baseline model.dropout=0.3 matches 0 groups; "
                                                          "choose from: model.dropout=0.5; model.dropout=0.0"),
    (lambda s, t: [s, "--by", "model.dropout,,seed"], "error: argument --by: got 'model.dropout,,seed', expected "
                                                       "comma-separated config keys"),
    (lambda s, t: [s, "--direction", "up"], "error: argument --direction: invalid choice: 'up'"),
    (lambda s, t: [s, "--wandb-timeout", "nan"], "error: argument --wandb-timeout: got 'nan', expected seconds > 0"),
    (lambda s, t: [s, "--no-such-option"], "error: unrecognized arguments: --no-such-option"),
    (lambda s, t: [], "error: give run dirs / multirun dirs / globs, or --wandb ENTITY/PROJECT"),
    (lambda s, t: [s, "--wandb", "me/proj"], "error: give run dirs / multirun dirs / globs, or --wandb ENTITY/PROJECT,"
                                             " not both"),
    (lambda s, t: [s, "--group", "g"], "error: --group picks the runs of a W&B group: it goes with --wandb"),
    (lambda s, t: [s, f"{t}/typo"], "error: {t}/typo: no such file or directory, and no path matches it"),
    (lambda s, t: [s, "--out", taken_file(Path(t))], "error: --out {t}/taken.md is a file; give a folder"),
    (lambda s, t: [s, "--out", f"{s}/0"], "error: --out {s}/0 is a run dir, and a run dir belongs to its run; give "
                                          "--out <a folder outside every run dir>"),
    (lambda s, t: [s, "--out", f"{s}/0/report"], "error: --out {s}/0/report is inside run dir {s}/0, and a run dir"),
    (lambda s, t: [s, "--out", "/"], "error: --out / is a filesystem root (/); give --out <folder> for the report"),
    (lambda s, t: [f"{s}/0"], "error: the report's default folder {s}/0 (the runs' common folder) is a run dir"),
    (lambda s, t: [s, "--log-wandb", "a/b"], "error: --log-wandb a/b: Invalid project name 'a/b': cannot contain"),
]


def taken_file(tmp_path: Path) -> str:
    (tmp_path / "taken.md").write_text("someone's notes\n")
    return str(tmp_path / "taken.md")


@pytest.mark.parametrize("argv,expected", REFUSED, ids=[e[7:55] for _, e in REFUSED])
def test_bad_arguments_and_report_folders_are_one_line_exit_2_and_write_nothing(sweep, tmp_path, capsys, argv,
                                                                               expected):
    args = argv(str(sweep), str(tmp_path))
    line = refused(args, capsys, tmp_path)
    assert line.startswith(expected.replace("{s}", str(sweep)).replace("{t}", str(tmp_path))), line


def test_runs_whose_common_folder_is_a_filesystem_root_need_out():
    with pytest.raises(Refusal, match=r"^error: the report's default folder / \(the runs' common folder\) is a "
                                      r"filesystem root \(/\); give --out <folder>"):
        report_dir(None, [Path("/genlab-nowhere-a/run"), Path("/genlab-nowhere-b/run")])


def test_weights_that_genlab_does_not_compare_are_one_line(sweep, capsys, tmp_path):
    for run_dir in sweep.iterdir():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "analysis": {"compared_weights": "worst"}}))
    assert refused([str(sweep)], capsys, tmp_path).startswith(
        "error: the runs compare weights genlab does not know (not best or last) "
        "(analysis.compared_weights: worst in 5 runs); pass --metric")


def test_the_wandb_wait_is_logger_wandb_init_timeout():
    assert yaml.safe_load((CONF_DIR / "logger" / "wandb.yaml").read_text())["wandb"]["init_timeout"] == WANDB_TIMEOUT_S


def test_wandb_without_a_key_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: no key anywhere
    monkeypatch.chdir(tmp_path)
    assert refused(["--wandb", "me/proj"], capsys, tmp_path) == \
        "error: --wandb me/proj: No API key configured. Use `wandb login` to log in."


def test_log_wandb_without_a_network_logs_offline_under_the_report_dir_in_one_line(sweep, tmp_path, monkeypatch,
                                                                                    capsys):
    import wandb

    started = []

    class OfflineRun(SimpleNamespace):
        offline = True

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def init(**kwargs):
        started.append(kwargs)
        if kwargs.get("mode") != "offline":  # what W&B raises after init_timeout with a key and no network
            raise wandb.errors.CommError("Run initialization has timed out after 2.0 sec.\nPlease try increasing "
                                         "the timeout with the `init_timeout` setting")
        return OfflineRun(dir=f"{kwargs['dir']}/wandb/offline-run-x-abc/files", log=lambda data: None,
                          log_artifact=lambda artifact: None)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "setup", lambda settings: None)  # W&B's process-wide setup: not this test process's
    # a real Artifact stages its files under ~/.local/share/wandb at once
    monkeypatch.setattr(wandb, "Artifact", lambda *args, **kwargs: SimpleNamespace(add_file=lambda path: None))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    lines, _ = reported(sweep, capsys, "--log-wandb", "study", "--wandb-timeout", "2")
    assert [s["dir"] for s in started] == [str(sweep)] * 2 and started[0]["settings"].init_timeout == 2
    assert lines == ["warning: --log-wandb study: W&B could not start online: Run initialization has timed out "
                     "after 2.0 sec. Please try increasing the timeout with the `init_timeout` setting (waited at most "
                     f"2 s: --wandb-timeout); logged offline, upload later with: wandb sync {sweep}/wandb/"
                     "offline-run-x-abc"]
    assert list(cwd.iterdir()) == []


@pytest.mark.slow  # the script server's first start imports torch and Lightning: 10-20 s on 2 busy cores
def test_wandb_with_a_key_and_no_network_is_one_line_exit_2_after_the_wait(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "WANDB_API_KEY": "0123456789abcdef" * 2 + "01234567",
           "WANDB_BASE_URL": "http://127.0.0.1:9"}  # loopback's discard port: refused at once, nothing leaves
    env.pop("WANDB_MODE", None)
    (tmp_path / "cwd").mkdir()
    start = time.monotonic()
    result = run_script("compare.py", "--wandb", "me/proj", "--wandb-timeout", "2", cwd=tmp_path / "cwd", env=env,
                        timeout=120)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert result.stderr.startswith("error: --wandb me/proj: ") and "--wandb-timeout" in result.stderr
    assert time.monotonic() - start < 60  # W&B's own wait is 90 s; the bound is loose, the point is it is set
    assert list((tmp_path / "cwd").iterdir()) == []
