"""The report's words and marks, checked on the matplotlib Figure objects: every axis label, title and legend text of
a metric comes from the one label table; every visual channel has a legend; the palette stays distinguishable for
colour-blind readers; a single seed is one marker; intervals only where the seeds make them informative; a single run
is called one."""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from genlab.analysis import figures, labels
from test_analysis_report_pictures import all_figures, ranked, write_run

RAW_KEY = re.compile(r"\b(final/)?(test|train_eval|gap|val|robust)/\w+")


def figure_texts(fig) -> list[str]:
    """Every text a reader sees: titles, suptitles, axis labels and legend entries (tick labels are group values)."""
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if ax.get_legend() is not None:
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
    for legend in fig.legends:
        texts += [t.get_text() for t in legend.get_texts()]
    return [t for t in texts if t]


def legend_texts(fig) -> list[str]:
    return [t.get_text().replace("\n", "") for legend in fig.legends for t in legend.get_texts()]


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "s"
    for dropout, accs in {0.0: [0.90, 0.91, 0.905], 0.5: [0.95, 0.96, 0.955]}.items():
        for seed, acc in enumerate(accs, 1):
            write_run(root, f"d{dropout}_s{seed}", seed, acc, {"model": {"dropout": dropout}})
    return root


# --- the label table ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, label", [
    ("test/acc", "test acc, best ckpt"), ("final/test/acc", "test acc, last epoch"), ("gap/acc", "gap, best ckpt"),
    ("final/test/ece", "ECE, last epoch"), ("robust/acc_mean", "robust acc"), ("val/acc_best", "best val acc"),
    ("robust/gaussian_noise_s3", "acc under gaussian noise, severity 3"), ("test/acc_top5", "test/acc_top5")])
def test_each_metric_key_has_one_label(key, label):
    assert labels.metric_label(key) == label


def test_every_figures_texts_come_from_the_label_table(sweep):
    groups = ranked(sweep)
    for name, fig in all_figures(groups, figures.group_colors(groups)).items():
        texts = figure_texts(fig)
        assert texts, name
        raw = [t for t in texts if RAW_KEY.search(t)]
        assert not raw, (name, raw)  # no results.json key where the table says words
    summary = figures.figure_summary(groups, "test/acc", figures.group_colors(groups), "max", (0, 1))
    assert summary.axes[0].get_ylabel() == "test acc, best ckpt (higher is better)"
    assert summary.axes[0].get_title().startswith("test acc, best ckpt per group")
    assert summary.axes[1].get_ylabel().startswith("Δ test acc, best ckpt vs baseline")
    gap = figures.figure_summary(groups, "gap/acc", figures.group_colors(groups), "min", (-1, 1), False)
    assert gap.axes[0].get_ylabel() == "gap, best ckpt (train − test accuracy)"


# --- a legend for every channel -------------------------------------------------------------------------------------

def test_the_trend_legend_names_the_groups_colours_and_the_line_styles(tmp_path):
    root = tmp_path / "s"
    for aug in ("none", "standard"):
        for fraction in (0.25, 1.0):
            for seed in (1, 2):
                write_run(root, f"{aug}{fraction}_{seed}", seed, 0.5 + fraction / 3 + seed / 100,
                          {"augmentation": {"name": aug}, "data": {"train_fraction": fraction}})
    groups = ranked(root, by=("augmentation.name", "data.train_fraction"))
    colors = figures.group_colors(groups)
    fig = figures.figure_trend(groups, "data.train_fraction", "test/acc", colors, "max", (0.0, 1.0))
    (legend,) = fig.legends
    entries = dict(zip((t.get_text().replace("\n", "") for t in legend.get_texts()), legend.legend_handles))
    for g in groups:  # each colour is named
        assert to_rgb(entries[g.label].get_color()) == to_rgb(colors[g.label])
    styles = {text: handle.get_linestyle() for text, handle in entries.items() if text.startswith("line: ")}
    assert styles == {"line: augmentation.name=none": "-", "line: augmentation.name=standard": "--"}


def test_the_learning_curves_legend_names_the_line_styles(sweep):
    groups = ranked(sweep)
    fig = figures.figure_learning_curves(groups, figures.group_colors(groups))
    assert {"validation", "train (eval mode)"} <= set(legend_texts(fig))


# --- a palette every reader can tell apart --------------------------------------------------------------------------

# Machado, Oliveira & Fernandes (2009), severity 1, applied to linear RGB
DICHROMACY = {
    "normal": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
DISTINCT = 18.0  # CIEDE2000; ~2.3 is a just-noticeable difference, and Okabe-Ito's two oranges reach 12.5 (deutan)


def lab(hex_color: str, vision: str) -> np.ndarray:
    srgb = np.array(to_rgb(hex_color))
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ np.clip(
        DICHROMACY[vision] @ linear, 0, 1) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """Sharma, Wu & Dalal (2005)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1 = math.degrees(math.atan2(b1, a1)) % 360 if c1 else 0.0
    h2 = math.degrees(math.atan2(b2, a2)) % 360 if c2 else 0.0
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_hue = 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh) / 2)
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(h_mean - 30)) + 0.24 * math.cos(math.radians(2 * h_mean))
         + 0.32 * math.cos(math.radians(3 * h_mean + 6)) - 0.20 * math.cos(math.radians(4 * h_mean - 63)))
    rotation = 30 * math.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(c_mean**7 / (c_mean**7 + 25**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    r_t = -math.sin(math.radians(2 * rotation)) * r_c
    return math.sqrt(((l2 - l1) / s_l) ** 2 + ((c2 - c1) / s_c) ** 2 + (d_hue / s_h) ** 2
                     + r_t * (c2 - c1) / s_c * d_hue / s_h)


def test_ciede2000_matches_sharmas_published_pairs():
    assert ciede2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485])) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000(np.array([60.2574, -34.0099, 36.2677]), np.array([60.4626, -34.1751, 39.4387])) == \
        pytest.approx(1.2644, abs=1e-4)
    assert ciede2000(np.array([22.7233, 20.0904, -46.6940]), np.array([23.0331, 14.9730, -42.5619])) == \
        pytest.approx(2.0373, abs=1e-4)


@pytest.mark.parametrize("vision", list(DICHROMACY))
def test_every_pair_of_palette_colours_stays_apart(vision):
    for a, b in itertools.combinations(figures.PALETTE, 2):
        assert ciede2000(lab(a, vision), lab(b, vision)) >= DISTINCT, (vision, a, b)
    for colour in figures.PALETTE:  # and off the page and the neutral grey lines
        for other in ("#ffffff", figures.NEUTRAL):
            assert ciede2000(lab(colour, vision), lab(other, vision)) >= 12, (vision, colour, other)


def test_the_check_tells_okabe_itos_two_oranges_apart_from_distinct_colours():
    assert ciede2000(lab("#e69f00", "deuteranopia"), lab("#d55e00", "deuteranopia")) < DISTINCT


# --- seeds, single seeds, intervals ---------------------------------------------------------------------------------

def groups_with_seed_counts(root, counts: dict[float, int]):
    for dropout, n in counts.items():
        for seed in range(1, n + 1):
            write_run(root, f"d{dropout}_s{seed}", seed, 0.8 + dropout / 10 + seed / 100,
                      {"model": {"dropout": dropout}})
    return ranked(root)


def gid_artists(fig, gid: str) -> list:
    return fig.findobj(lambda a: a.get_gid() == gid)


def test_a_single_seed_group_is_one_marker_and_two_seeds_get_no_interval(tmp_path):
    groups = groups_with_seed_counts(tmp_path / "s", {0.0: 1, 0.25: 2, 0.5: 3})
    colors = figures.group_colors(groups)
    by_n = {len(g.runs): g for g in groups}
    for name, fig in all_figures(groups, colors).items():
        if name == "learning_curves":
            continue
        one = by_n[1].label
        assert not gid_artists(fig, f"seeds:{one}"), name  # no seed dot beside its own mean
        assert all(a.get_markerfacecolor() == "white" for a in gid_artists(fig, f"mean:{one}") if
                   hasattr(a, "get_markerfacecolor")), name
        two = gid_artists(fig, f"mean:{by_n[2].label}")
        assert two and not any(type(a).__name__ == "LineCollection" for a in two), name  # no interval at 2 seeds
        three = gid_artists(fig, f"mean:{by_n[3].label}")
        assert any(type(a).__name__ == "LineCollection" for a in three), name  # the interval at 3
    summary = figures.figure_summary(groups, "test/acc", colors, "max", (0.0, 1.0))
    title = summary.axes[0].get_title().replace("\n", " ")
    assert "no interval under 3 seeds" in title and "hollow circle: a single seed" in title


@pytest.mark.parametrize("counts, title", [
    ({0.0: 1}, "Learning curves of a single run"),
    ({0.0: 1, 0.5: 1}, "Learning curves: a single run per group"),
    ({0.0: 1, 0.5: 2},
     "Learning curves: each group's mean over its seeds, band ±1 std; a one-seed group: its single run"),
    ({0.0: 2, 0.5: 2}, "Learning curves: each group's mean over its seeds, band ±1 std"),
])
def test_learning_curves_of_single_runs_say_single_run(tmp_path, counts, title):
    groups = groups_with_seed_counts(tmp_path / "s", counts)
    fig = figures.figure_learning_curves(groups, figures.group_colors(groups))
    assert fig._suptitle.get_text() == title
    assert all(not gid_artists(fig, f"band:{g.label}") for g in groups if len(g.runs) == 1)  # no zero-width band
