"""``dlc train --plot``: the learning curves, one axes per quantity (loss, each metric) with
its training and validation curves over epochs (runtime/commands/train.py, matplotlib's Agg
canvas).  The figure is inspected as an object, not as pixels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

import runtime.commands.train as train_command
from runtime.cli import main
from runtime.model import History

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(validated: bool) -> History:
    h = History()
    logs = [{"loss": 0.9, "accuracy": 0.5}, {"loss": 0.6, "accuracy": 0.7}, {"loss": 0.4, "accuracy": 0.8}]
    for epoch, entry in enumerate(logs):
        if validated:
            entry = {**entry, "val_loss": entry["loss"] + 0.1, "val_accuracy": entry["accuracy"] - 0.1}
        h.record(epoch, entry)
    return h


def curves(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_one_axes_per_metric_with_train_and_validation_over_epochs() -> None:
    fig = train_command.history_figure(history(validated=True), "clf")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss, accuracy = (curves(ax) for ax in fig.axes)
    assert loss == {"train": ([1, 2, 3], [0.9, 0.6, 0.4]),
                    "validation": ([1, 2, 3], [pytest.approx(1.0), pytest.approx(0.7), pytest.approx(0.5)])}
    assert accuracy["train"] == ([1, 2, 3], [0.5, 0.7, 0.8]) and len(accuracy["validation"][1]) == 3
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train", "validation"]


def test_without_validation_each_axes_has_the_training_curve() -> None:
    fig = train_command.history_figure(history(validated=False), "clf")
    assert [list(curves(ax)) for ax in fig.axes] == [["train"], ["train"]]


def test_resumed_training_counts_epochs_on() -> None:
    h = History()
    for epoch in (3, 4):                       # fit(initial_epoch=3): epochs 4 and 5
        h.record(epoch, {"loss": 1.0 / (epoch + 1)})
    (ax,) = train_command.history_figure(h, "m").axes
    assert curves(ax)["train"][0] == [4, 5]


def test_train_plot_writes_a_png_of_the_run(tmp_path: Path, monkeypatch, capsys) -> None:
    figures = []

    def capture(h, title):
        figures.append(real(h, title))
        return figures[-1]

    real = train_command.history_figure
    monkeypatch.setattr(train_command, "history_figure", capture)
    path = tmp_path / "curves.png"
    rc = main(["train", str(EXAMPLES / "xor.dl"), "--backend", "interp", "--quiet", "--epochs", "3",
               "--validation-split", "0.25", "--plot", str(path)])
    assert rc == 0 and f"wrote learning curves to {path}" in capsys.readouterr().out
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    height, width, channels = matplotlib.image.imread(path).shape    # decodes: a valid PNG
    assert height > 100 and width > 100 and channels in (3, 4)
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        lines = curves(ax)
        assert list(lines) == ["train", "validation"] and lines["train"][0] == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_a_path_without_suffix_is_written_as_png_by_that_name(tmp_path: Path) -> None:
    path = tmp_path / "curves"
    train_command.plot_history(history(validated=True), path, "clf")
    assert path.read_bytes().startswith(PNG_SIGNATURE) and [p.name for p in tmp_path.iterdir()] == ["curves"]


def test_an_unknown_image_suffix_is_an_error_before_training(tmp_path: Path, capsys) -> None:
    rc = main(["train", str(EXAMPLES / "xor.dl"), "--backend", "interp", "--plot", str(tmp_path / "c.xyz")])
    captured = capsys.readouterr()
    assert rc == 1 and "matplotlib cannot write '.xyz' images" in captured.err and ".png" in captured.err
    assert "epoch" not in captured.out and not list(tmp_path.iterdir())
