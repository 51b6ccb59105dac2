"""The report's pictures, checked on the figure objects and the HTML: one colour per group in every figure and the
table, each seed a dot beside its mean and interval, axes that show the differences, titles inside the figure,
whole-number epochs, loss beside accuracy, log-x for scales, per-class and per-corruption panels, the list of runs;
and the page itself, rendered by a headless browser when one is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from scipy import stats

from genlab.analysis import figures
from genlab.analysis.report import group_runs, main, rank_and_test
from genlab.analysis.runs import find_run_dirs, load_local_run

ACC = {0.0: [0.900, 0.912, 0.905], 0.25: [0.930, 0.936, 0.941], 0.5: [0.951, 0.960, 0.955]}  # by dropout, seeds 1-3
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_run(root: Path, name: str, seed: int, acc: float, config: dict, epochs: int = 5, status: str = "completed",
              dirty: bool = False, classes: int = 10) -> Path:
    """A run dir in the pipeline's schema: results.json (metrics, per-class accuracy, seed, git), config.yaml and a
    metrics.csv with Lightning's rows (a step row and a validation row per epoch, then the test row)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    metrics = {"test/acc": acc, "train_eval/acc": acc + 0.02 + seed / 1000, "gap/acc": 0.02 + seed / 1000,
               "test/loss": 1 - acc, "robust/acc_mean": acc - 0.2}
    for corruption, drop in (("gaussian_noise", 0.05), ("contrast", 0.1)):
        metrics.update({f"robust/{corruption}_s{k}": acc - drop * k for k in (1, 3)})
    per_class = {str(c): min(1.0, acc + (c - classes / 2) / 100) for c in range(classes)}
    record = {"schema_version": 1, "status": status, "seed": seed, "git": {"commit": COMMIT, "dirty": dirty},
              "metrics": metrics if status == "completed" else {}, "per_class_acc": per_class}
    (run_dir / "results.json").write_text(json.dumps(record))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "data": {"name": "digits"}, **config}))
    lines = ["epoch,step,train/loss_step,val/acc,val/loss,train_eval/acc,train_eval/loss,test/acc"]
    for epoch in range(epochs):
        curve = acc * (epoch + 1) / epochs
        lines += [f"{epoch},{10 * epoch + 5},1.0,,,,,",
                  f"{epoch},{10 * epoch + 9},,{curve:.4f},{2 - curve:.4f},{curve + 0.01:.4f},{1.9 - curve:.4f},"]
    lines.append(f"{epochs - 1},{10 * epochs},,,,,,{acc}")
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun"
    for dropout, accs in ACC.items():
        for seed, acc in enumerate(accs, 1):
            write_run(root, f"d{dropout}_s{seed}", seed, acc, {"model": {"dropout": dropout}}, dirty=seed == 3)
    return root


def ranked(root: Path, by=("model.dropout",), metric="test/acc", direction=None):
    runs = [load_local_run(d) for d in find_run_dirs([str(root)])]
    return rank_and_test(group_runs(runs, list(by), metric), metric, None, direction)


def all_figures(groups, colors, key="model.dropout"):
    made = {
        "metric": figures.figure_summary(groups, "test/acc", colors, "max", (0.0, 1.0)),
        "gap": figures.figure_summary(groups, "gap/acc", colors, "min", (-1.0, 1.0), with_differences=False),
        "learning_curves": figures.figure_learning_curves(groups, colors),
        "per_class": figures.figure_per_class(groups, colors),
        "robustness": figures.figure_robustness(groups, colors),
        "trend": figures.figure_trend(groups, key, "test/acc", colors, "max", (0.0, 1.0)),
    }
    assert all(fig is not None for fig in made.values()), [k for k, f in made.items() if f is None]
    return made


def colours_of(artist) -> set[str]:
    """The colours an artist paints with (fill and line), as #rrggbb, ignoring transparent and white fills."""
    if isinstance(artist, Line2D):
        found = [artist.get_color(), artist.get_markeredgecolor()]
    elif isinstance(artist, LineCollection):
        found = list(artist.get_colors())
    else:
        found = list(artist.get_facecolors()) + list(artist.get_edgecolors())
    return {to_hex(c, keep_alpha=False) for c in found if not (isinstance(c, str) and c == "none")} - {"#ffffff"}


def group_artists(fig) -> dict[str, list]:
    """label -> the artists drawn for that group (their gid is '<role>:<label>')."""
    found: dict[str, list] = {}
    for artist in fig.findobj(lambda a: isinstance(a.get_gid(), str) and ":" in a.get_gid()):
        found.setdefault(artist.get_gid().split(":", 1)[1], []).append(artist)
    return found


# --- one colour per group -------------------------------------------------------------------------------------------

def test_every_figure_paints_each_group_in_its_one_colour(sweep):
    groups = ranked(sweep)
    colors = figures.group_colors(groups)
    assert len(set(colors.values())) == len(groups)  # distinct
    for name, fig in all_figures(groups, colors).items():
        drawn = group_artists(fig)
        assert set(drawn) == {g.label for g in groups}, name
        for label, artists in drawn.items():
            painted = set().union(*(colours_of(a) for a in artists))
            assert painted == {colors[label]}, (name, label, painted)


def test_a_group_keeps_its_colour_when_the_ranking_changes(sweep):
    by_max = figures.group_colors(ranked(sweep, direction="max"))
    by_min = figures.group_colors(ranked(sweep, direction="min"))  # the ranking reversed
    assert by_max == by_min


def test_the_html_table_and_runs_list_show_the_colours_the_figures_use(sweep, tmp_path):
    out = main([str(sweep), "--out", str(tmp_path / "out")])
    page = (out / "report.html").read_text()
    colors = figures.group_colors(ranked(sweep))
    swatches = re.findall(r'<td class="group"><span class="swatch" style="background:(#[0-9a-f]{6})"></span>'
                          r"([^<]+)</td>", page)
    assert {label: colour for colour, label in swatches} == colors
    assert len(swatches) == len(colors) + 9  # the table's rows, then one per run in the runs list


# --- seeds, means and intervals -------------------------------------------------------------------------------------

def test_each_seed_is_a_dot_beside_its_groups_mean_and_interval(sweep):
    groups = ranked(sweep)
    colors = figures.group_colors(groups)
    fig = figures.figure_summary(groups, "test/acc", colors, "max", (0.0, 1.0))
    ax = fig.axes[0]
    for i, g in enumerate(groups):
        dots = next(a for a in ax.collections if a.get_gid() == f"seeds:{g.label}")
        values = ACC[dict(g.values)["model.dropout"]]
        assert list(dots.get_offsets()[:, 1]) == pytest.approx(values)  # seed order: 1, 2, 3
        (bar,) = [a for a in ax.collections if isinstance(a, LineCollection) and a.get_gid() == f"mean:{g.label}"]
        (segment,) = bar.get_segments()
        mean_x = segment[0][0]
        low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        assert sorted(segment[:, 1]) == [pytest.approx(low), pytest.approx(high)]
        assert i - 0.5 < max(dots.get_offsets()[:, 0]) < mean_x < i + 0.5  # beside the mean, in its slot
        assert len(set(dots.get_offsets()[:, 0])) == 3  # spread apart, so equal values do not hide each other


def test_a_single_seed_is_a_hollow_mean_with_no_interval(tmp_path):
    root = tmp_path / "s"
    write_run(root, "a1", 1, 0.90, {"model": {"dropout": 0.0}})
    write_run(root, "a2", 2, 0.91, {"model": {"dropout": 0.0}})
    write_run(root, "b1", 1, 0.85, {"model": {"dropout": 0.5}})
    groups = ranked(root)
    assert not groups[-1].best and len(groups[-1].runs) == 1
    fig = figures.figure_summary(groups, "test/acc", figures.group_colors(groups), "max", (0.0, 1.0))
    single = next(g for g in groups if len(g.runs) == 1)
    for ax in fig.axes:  # values, and differences from the baseline
        artists = [a for a in ax.get_children() if a.get_gid() == f"mean:{single.label}"]
        assert artists and not any(isinstance(a, LineCollection) for a in artists)
    (mean,) = [a for a in fig.axes[0].lines if a.get_gid() == f"mean:{single.label}"]
    assert mean.get_markerfacecolor() == "white"


# --- axes that show the differences ---------------------------------------------------------------------------------

def test_the_value_axis_spans_the_values_and_the_difference_axis_shows_welchs_interval(sweep):
    groups = ranked(sweep)
    colors = figures.group_colors(groups)
    fig = figures.figure_summary(groups, "test/acc", colors, "max", (0.0, 1.0))
    values_ax, differences_ax = fig.axes
    low, high = values_ax.get_ylim()
    assert 0.8 < low < 0.9 and high < 1.0  # not from 0: a 0.05 difference fills the axis
    assert not values_ax.patches and not differences_ax.patches  # dots and intervals, no bars
    assert any(line.get_ydata()[0] == 0 == line.get_ydata()[-1] for line in differences_ax.lines)  # the zero line
    base = next(g for g in groups if g.baseline)
    for g in groups:
        if g is base:
            continue
        (bar,) = [a for a in differences_ax.collections
                  if isinstance(a, LineCollection) and a.get_gid() == f"mean:{g.label}"]
        mine, theirs = ACC[dict(g.values)["model.dropout"]], ACC[dict(base.values)["model.dropout"]]
        expected = stats.ttest_ind(mine, theirs, equal_var=False).confidence_interval(0.95)
        assert sorted(bar.get_segments()[0][:, 1]) == [pytest.approx(expected.low), pytest.approx(expected.high)]
        dots = next(a for a in differences_ax.collections if a.get_gid() == f"seeds:{g.label}")
        assert list(dots.get_offsets()[:, 1]) == pytest.approx([a - b for a, b in zip(mine, theirs)])  # by seed
    assert "(baseline)" in [t.get_text() for t in differences_ax.get_xticklabels()][groups.index(base)]


def test_titles_labels_and_legends_stay_inside_their_figures(tmp_path):
    root = tmp_path / "s"
    long, knob = "a_rather_long_augmentation_preset_name_from_a_real_study", "a_long_numeric_knob_of_the_preset"
    for seed in (1, 2):
        for name, acc in ((long, 0.91), ("none", 0.9), ("standard_with_cutout", 0.93)):
            write_run(root, f"{name}{seed}", seed, acc + seed / 100, {"augmentation": {"name": name, knob: acc}})
    groups = ranked(root, by=("augmentation.name", f"augmentation.{knob}"))
    colors = figures.group_colors(groups)
    for name, fig in all_figures(groups, colors, key=f"augmentation.{knob}").items():
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        drawn = fig.get_tightbbox(canvas.get_renderer())  # every title, label, tick label and legend drawn, in inches
        width, height = fig.get_size_inches()
        assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01, (
            name, drawn, (width, height))
    labels = [t.get_text() for t in figures.figure_summary(groups, "test/acc", colors, "max", (0, 1)).axes[0]
              .get_xticklabels()]
    (tick,) = [t for t in labels if long in t.replace("\n", "")]  # a long value wraps, at its underscores
    assert tick.startswith("a_rather_long_\naugmentation_\n") and max(map(len, tick.splitlines())) <= 18


# --- learning curves ------------------------------------------------------------------------------------------------

def test_learning_curves_show_loss_beside_accuracy_over_whole_epochs(sweep):
    groups = ranked(sweep)
    colors = figures.group_colors(groups)
    fig = figures.figure_learning_curves(groups, colors)
    accuracy, loss = fig.axes
    assert (accuracy.get_ylabel(), loss.get_ylabel()) == ("accuracy", "loss")
    FigureCanvasAgg(fig).draw()
    for ax in (accuracy, loss):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        for g in groups:
            lines = [line for line in ax.lines if line.get_gid() == f"line:{g.label}"]
            assert len(lines) == 2  # validation and train in eval mode
            assert all(list(line.get_xdata()) == [1, 2, 3, 4, 5] for line in lines)  # counted from the first epoch
    best = groups[0]
    (val_acc,) = [line for line in accuracy.lines
                  if line.get_gid() == f"line:{best.label}" and line.get_linestyle() == "-"]
    expected = np.mean([round(a, 4) for a in ACC[0.5]])  # the last epoch of metrics.csv holds each seed's acc
    assert val_acc.get_ydata()[-1] == pytest.approx(expected)


def test_curves_average_only_the_epochs_every_seed_reached(tmp_path):
    root = tmp_path / "s"
    write_run(root, "a", 1, 0.9, {"model": {"dropout": 0.0}}, epochs=5)
    write_run(root, "b", 2, 0.9, {"model": {"dropout": 0.0}}, epochs=3)  # stopped early
    (group,) = ranked(root, by=())
    epochs, mean, std = figures.curve_by_epoch(group, "val/acc")
    assert epochs == [1, 2, 3]
    assert mean[-1] == pytest.approx((0.9 * 3 / 5 + 0.9 * 3 / 3) / 2)


# --- trends ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, values, log", [
    ("data.train_fraction", [0.1, 0.3, 1.0], True),
    ("data.batch_size", [64, 128], True),  # a scale by name, though it spans only 2x
    ("optimizer.lr", [0.0001, 0.001, 0.01], True),  # spans 10x and more
    ("model.dropout", [0.0, 0.25, 0.5], False),  # 0 has no logarithm
    ("model.depth", [20, 32, 56], False),
])
def test_trends_use_a_log_axis_where_the_key_is_a_scale(tmp_path, key, values, log):
    root = tmp_path / "s"
    section, leaf = key.split(".")
    for i, value in enumerate(values):
        for seed in (1, 2):
            write_run(root, f"{i}_{seed}", seed, 0.8 + i / 20 + seed / 200, {section: {leaf: value}})
    groups = ranked(root, by=(key,))
    fig = figures.figure_trend(groups, key, "test/acc", figures.group_colors(groups), "max", (0.0, 1.0))
    ax = fig.axes[0]
    assert ax.get_xscale() == ("log" if log else "linear")
    assert [float(t) for t in ax.get_xticks()] == pytest.approx(values)  # ticks at the values that were run
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in values]
    for g in groups:
        x = float(dict(g.values)[key])
        dots = next(a for a in ax.collections if a.get_gid() == f"seeds:{g.label}")
        assert all(d < x for d in dots.get_offsets()[:, 0]) and len(dots.get_offsets()) == 2


def test_a_report_of_a_fraction_sweep_has_a_log_x_trend(tmp_path):
    root = tmp_path / "s"
    for fraction in (0.1, 0.3, 1.0):
        for seed in (1, 2):
            write_run(root, f"{fraction}_{seed}", seed, 0.5 + fraction / 3 + seed / 100,
                      {"data": {"train_fraction": fraction}})
    out = main([str(root), "--out", str(tmp_path / "out")])
    assert (out / "trend.png").stat().st_size > 0 and "log axis" in (out / "report.html").read_text()


# --- per class and per corruption -----------------------------------------------------------------------------------

def test_per_class_panel_has_every_class_in_order_with_each_groups_mean(sweep):
    groups = ranked(sweep)
    fig = figures.figure_per_class(groups, figures.group_colors(groups))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in range(10)]  # 10 after 9, not after 1
    g = groups[0]
    (bar,) = [a for a in ax.collections if isinstance(a, LineCollection) and a.get_gid() == f"mean:{g.label}"][:1]
    marker = next(line for line in ax.lines if line.get_gid() == f"mean:{g.label}" and line.get_marker() == "o")
    expected_class0 = np.mean([r.per_class["0"] for r in g.runs])
    assert marker.get_ydata()[0] == pytest.approx(expected_class0)


def test_per_class_panel_keeps_the_classes_groups_differ_on_most(tmp_path):
    root = tmp_path / "s"
    for seed in (1, 2):
        write_run(root, f"a{seed}", seed, 0.9, {"model": {"dropout": 0.0}}, classes=30)
        run_dir = write_run(root, f"b{seed}", seed, 0.9, {"model": {"dropout": 0.5}}, classes=30)
        record = json.loads((run_dir / "results.json").read_text())
        record["per_class_acc"]["7"] -= 0.3  # the one class group b is worse on
        (run_dir / "results.json").write_text(json.dumps(record))
    groups = ranked(root)
    fig = figures.figure_per_class(groups, figures.group_colors(groups), most=5)
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == 5 and "7" in [t.get_text() for t in ax.get_xticklabels()]
    assert "5 of 30 classes" in ax.get_title().replace("\n", " ")


def test_robustness_has_a_panel_per_corruption_with_clean_as_severity_0(sweep):
    groups = ranked(sweep)
    fig = figures.figure_robustness(groups, figures.group_colors(groups))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in panels) == ["contrast", "gaussian noise"]
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "3"]
    contrast = next(ax for ax in panels if ax.get_title() == "contrast")
    g = groups[0]
    (line,) = [a for a in contrast.lines if a.get_gid() == f"line:{g.label}"]
    accs = ACC[dict(g.values)["model.dropout"]]
    assert list(line.get_ydata()) == pytest.approx([np.mean(accs), np.mean(accs) - 0.1, np.mean(accs) - 0.3])


# --- the list of runs -----------------------------------------------------------------------------------------------

def test_runs_list_names_each_run_its_seed_commit_and_wandb_record(sweep, tmp_path):
    runs = sorted(find_run_dirs([str(sweep)]))
    online, offline, unknown = runs[0], runs[1], runs[2]
    wandb_config = {"logger": {"wandb": {"project": "genlab", "entity": "me", "save_dir": str(online)}}}
    for run_dir, run_id, folder in ((online, "on1", "run-20260101_000000-on1"),
                                    (offline, "off1", "offline-run-20260101_000000-off1"),
                                    (unknown, "def1", "run-20260101_000000-def1")):
        (run_dir / "wandb_run_id").write_text(run_id)
        (run_dir / "wandb" / folder).mkdir(parents=True)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config.update(json.loads(json.dumps(wandb_config)))
        config["logger"]["wandb"]["save_dir"] = str(run_dir)
        if run_dir == unknown:
            config["logger"]["wandb"]["entity"] = None  # W&B's default entity: not recorded in the run dir
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    failed = write_run(sweep, "failed_run", 4, 0.0, {"model": {"dropout": 0.5}}, status="failed")
    out = main([str(sweep), "--out", str(tmp_path / "out")])
    page, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    runs_section = page.split("<h2>Runs</h2>", 1)[1]
    # each row's cells as text (a path is split into segments that may wrap only after a slash)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", runs_section)[1:]]
    rows = [[re.sub(r"<[^>]+>", "", cell) for cell in row] for row in rows]
    assert len(rows) == 10
    for run_dir in [*runs, failed]:
        (row,) = [r for r in rows if r[1] == str(run_dir)]
        seed = yaml.safe_load((run_dir / "config.yaml").read_text())["seed"]
        assert row[2] == str(seed) and row[5].startswith(COMMIT[:12])
        assert ("uncommitted changes" in row[5]) == (seed == 3)
        assert f"{run_dir}" in markdown
    assert '<a href="https://wandb.ai/me/genlab/runs/on1">on1</a>' in page
    wandb_cells = {r[1]: r[6] for r in rows}
    assert wandb_cells[str(online)] == "on1"
    assert wandb_cells[str(offline)] == (f"off1: offline, not uploaded; wandb sync "
                                         f"{offline / 'wandb' / 'offline-run-20260101_000000-off1'}")
    assert wandb_cells[str(unknown)].startswith("def1 in project genlab: uploaded; URL unknown")
    assert wandb_cells[str(failed)] == "—"
    assert "[on1](https://wandb.ai/me/genlab/runs/on1)" in markdown
    (failed_row,) = [r for r in rows if r[1] == str(failed)]
    assert failed_row[3] == "failed" and failed_row[4] == "—"
    assert [r[0] for r in rows] == [g.label for g in ranked(sweep) for _ in range(3 + (g.best))]  # table order


def test_a_synced_offline_run_and_a_resumed_one_are_read_from_the_newest_wandb_folder(tmp_path):
    run_dir = write_run(tmp_path, "r", 1, 0.9, {"logger": {"wandb": {"project": "p", "entity": "e"}}})
    (run_dir / "wandb_run_id").write_text("abc")
    offline = run_dir / "wandb" / "offline-run-20260101_000000-abc"
    offline.mkdir(parents=True)
    assert load_local_run(run_dir).wandb.sync_dir == str(offline)
    (offline / "run-abc.wandb.synced").write_text("")  # what `wandb sync` leaves behind
    assert load_local_run(run_dir).wandb.url == "https://wandb.ai/e/p/runs/abc"
    (run_dir / "wandb" / "offline-run-20260202_000000-abc").mkdir()  # resumed offline later: not uploaded yet
    assert load_local_run(run_dir).wandb.sync_dir.endswith("offline-run-20260202_000000-abc")


# --- the page in a real browser -------------------------------------------------------------------------------------

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow  # a browser start and a full-page render: 5-10 s
@pytest.mark.skipif(BROWSER is None, reason="no chromium, chromium-browser or google-chrome on PATH")
def test_a_headless_browser_renders_the_report_with_its_figures(sweep, tmp_path):
    from PIL import Image

    out = main([str(sweep), "--out", str(tmp_path / "out")])
    shot = tmp_path / "report.png"
    width, height = 1400, 6000
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", f"--window-size={width},{height}", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (height, width)
    colors = figures.group_colors(ranked(sweep))
    for label, colour in colors.items():
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        painted = np.abs(image.astype(int) - rgb).sum(axis=2) < 30
        assert painted.sum() > 500, label  # the group's dots, intervals and curves are on the page
    # the figures fit the page: nothing drawn in the right margin, where an overflowing image or table would be
    assert (image[:, width - 20:] < 240).sum() == 0
    rows = np.flatnonzero((image < 200).any(axis=(1, 2)))
    assert rows.max() - rows.min() > 3000  # the table, six figures and the runs list, not a blank or broken page
