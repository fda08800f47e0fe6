"""Progress in a log: plain, complete, throttled lines (no ``\\r``, no width limit); rich bars on a terminal."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from dawgen import progress
from dawgen.cli import app
from dawgen.data.sources import demo_dir
from dawgen.models.loading import _gguf_progress
from dawgen.progress import LOG_WIDTH, LogConsole, LogProgress, progress_bar, track
from dawgen.tasks import Family

LONG_STATUS = "loss 1.033 conflicts 32% dev 56.2 " + "x" * 120  # far past 80 columns
LINE = re.compile(r"^(?P<description>.+?) (?P<done>\d+)/(?P<total>\d+|\?)( .*)? elapsed \d+:\d\d:\d\d( eta \S+)?$")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def log_console() -> tuple[LogConsole, io.StringIO]:
    stream = io.StringIO()  # not a terminal
    return LogConsole(file=stream), stream


def complete_lines(text: str) -> list[str]:
    assert "\r" not in text and (not text or text.endswith("\n"))
    return text.splitlines()


@pytest.mark.parametrize(("updates", "step", "most"), [(100, 0.05, 2), (100, 0.3, 5), (40, 1.0, 6)])
def test_log_lines_are_throttled_complete_and_uncut(updates, step, most):
    """M updates ``step`` seconds apart with a 10 s interval: the first, one per 10 s, the last."""
    target, stream = log_console()
    clock = Clock()
    with progress_bar(target=target, interval=10.0, get_time=clock) as bar:
        assert isinstance(bar, LogProgress)
        task = bar.add_task("prompt-tuning+paired demo-nli", total=updates, status="")
        for step_number in range(1, updates + 1):
            clock.now += step
            bar.update(task, completed=step_number, status=LONG_STATUS)
    lines = complete_lines(stream.getvalue())
    assert 2 <= len(lines) <= most
    assert lines[0] == f"prompt-tuning+paired demo-nli 0/{updates} elapsed 0:00:00"
    assert lines[-1].startswith(f"prompt-tuning+paired demo-nli {updates}/{updates} {LONG_STATUS} elapsed")
    assert all(LINE.match(line) for line in lines) and len(lines[-1]) > 150  # one line each, never cut
    for line in lines[1:-1]:  # the ETA: the mean pace so far times the steps left
        done = int(LINE.match(line)["done"])
        assert line.endswith(f" eta 0:00:{int(step * (updates - done)):02d}")


def test_log_lines_of_several_tasks_and_a_total_set_later():
    target, stream = log_console()
    clock = Clock()
    with progress_bar(target=target, get_time=clock) as bar:
        rounds = bar.add_task("generate demo-nli", total=0, status="")  # a total to come: no line yet
        bar.update(rounds, total=8, status="round 0")
        for _ in range(8):
            clock.now += 0.5
            bar.advance(rounds)  # the round's end is printed at once
        bar.update(rounds, total=12, status="round 1, 3/8 kept")
        for _ in range(3):
            bar.advance(rounds)
        test = bar.add_task("test", total=4, status="")
        bar.advance(test, 4)
        # leaving the display prints the unprinted last state of the first task
    assert complete_lines(stream.getvalue()) == [
        "generate demo-nli 0/8 round 0 elapsed 0:00:00",
        "generate demo-nli 8/8 round 0 elapsed 0:00:04",
        "test 0/4 elapsed 0:00:00",
        "test 4/4 elapsed 0:00:00",
        "generate demo-nli 11/12 round 1, 3/8 kept elapsed 0:00:04 eta 0:00:00",
    ]


def test_rich_bars_on_a_terminal_and_nothing_when_disabled():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    with progress_bar(target=terminal) as bar:
        assert type(bar) is Progress
    target, stream = log_console()
    with progress_bar(False, target=target) as bar:
        bar.advance(bar.add_task("quiet", total=3, status=""), 3)
    assert stream.getvalue() == ""


def test_the_console_does_not_wrap_in_a_log(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    target, stream = log_console()
    assert target.width == LOG_WIDTH
    target.print("word " * 60 + "[bold]end[/]")
    assert complete_lines(stream.getvalue()) == ["word " * 60 + "end"]
    monkeypatch.setenv("COLUMNS", "50")  # the user's width wins
    assert LogConsole(file=io.StringIO()).width == 50
    assert Console(file=io.StringIO(), force_terminal=True, width=70).width == 70


def test_track_and_the_gguf_tqdm_bar_go_through_our_lines(monkeypatch, capsys):
    monkeypatch.setattr(progress, "log_clock", Clock())
    assert list(track(range(3), "count")) == [0, 1, 2]
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    with _gguf_progress("convert model.gguf (once)"):
        assert list(gguf_utils.tqdm(["a", "b"], desc="Converting and de-quantizing GGUF tensors...")) == ["a", "b"]
    assert gguf_utils.tqdm is original
    assert complete_lines(capsys.readouterr().err) == [
        "count 0/3 elapsed 0:00:00",
        "count 3/3 elapsed 0:00:00",
        "convert model.gguf (once) 0/2 elapsed 0:00:00",
        "convert model.gguf (once) 2/2 elapsed 0:00:00",
    ]


@pytest.mark.usefixtures("one_torch_thread")
def test_a_tiny_training_run_logs_plain_lines(tiny_model_dirs, tmp_path, monkeypatch):
    """`dawgen prompt-tune` with its output captured (not a terminal): whole lines, first and last of each task."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", math.inf)  # nothing between the first and the last line
    demo = demo_dir()
    result = CliRunner().invoke(app, [
        "prompt-tune", "--task", str(demo / "task.yaml"), "--data", str(demo), "--test", str(demo / "test.tsv"),
        "--model", str(tiny_model_dirs[Family.DECODER]), "--steps", "6", "--eval-every", "3", "--precision", "fp32",
        "--out", str(tmp_path / "run"), "--set", "batch_size=4", "--set", "num_virtual_tokens=2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = complete_lines(result.output)
    progress_lines = [line for line in lines if LINE.match(line)]
    assert progress_lines[0] == "prompt-tuning demo-nli 0/6 elapsed 0:00:00"
    assert re.match(r"prompt-tuning demo-nli 6/6 loss \d\.\d{3} dev \d+\.\d elapsed ", progress_lines[1])
    assert progress_lines[2].startswith("test 0/150 ") and progress_lines[3].startswith("test 150/150 ")
    assert len(progress_lines) == 4
