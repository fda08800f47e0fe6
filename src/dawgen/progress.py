"""Progress shared by every long-running command: rich bars on a terminal, plain lines in a log.

On a terminal (or in Jupyter) ``progress_bar`` draws rich progress bars with ETA. When the console's
stream is not a terminal (a log file, a pipe, CI) it prints plain lines instead: a task's first
update, then at most one line every ``LOG_INTERVAL`` seconds, and its last state (when it completes,
and when the display closes); each line holds the description, step/total, the task's ``status``
field, the elapsed time and the ETA, is never cut to a width and never uses ``\\r``. The shared
``console`` does not wrap or crop what it prints when its stream is not a terminal either.
Libraries' own tqdm bars (transformers, huggingface_hub, datasets) are switched off
(``quiet_library_bars``); ``track`` routes an iterable through ours instead.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_INTERVAL = 10.0  # seconds between two lines of one task in a log
log_clock: Callable[[], float] = time.monotonic  # the clock of those seconds (tests put their own here)
LOG_WIDTH = 10_000  # the console's width when it writes to a log: wide enough never to wrap a line
LIBRARY_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")

T = TypeVar("T")


class LogConsole(Console):
    """A rich console that, writing to anything but a terminal, neither wraps nor crops at 80 columns.

    The stream is looked at on every print (``sys.stderr`` may be replaced, e.g. by a test runner);
    an explicit ``width`` or a ``COLUMNS`` variable still wins.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and "COLUMNS" not in self._environ and not is_interactive(self):
            return ConsoleDimensions(LOG_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console = LogConsole(stderr=True)


def is_interactive(target: Console | None = None) -> bool:
    """Whether ``target`` (the shared console by default) draws live displays: a terminal or Jupyter."""
    target = target or console
    return target.is_terminal or target.is_jupyter


def quiet_library_bars() -> None:
    """Switch off the tqdm bars of transformers, huggingface_hub and datasets (dawgen shows its own).

    Libraries not imported yet read the environment switches when they are (a switch set to 0 by the
    user wins); those already imported are told directly. Nothing is imported here.
    """
    for name in LIBRARY_BAR_SWITCHES:
        os.environ.setdefault(name, "1")
    if "huggingface_hub" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if "datasets" in sys.modules and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1":
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()


quiet_library_bars()


def _clock_time(seconds: float | None) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds or 0.0, 0.0))))


def _count(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def log_line(task: Task, remaining: float | None = None) -> str:
    """One task's state as a plain line: description, step/total, status, elapsed, ETA (``remaining`` s)."""
    parts = [task.description, f"{_count(task.completed)}/{_count(task.total)}"]
    status = str(task.fields.get("status") or "").strip()
    if status:
        parts.append(status)
    parts.append(f"elapsed {_clock_time(task.elapsed)}")
    if remaining is not None:
        parts.append(f"eta {_clock_time(remaining)}")
    return " ".join(parts)


class LogProgress(Progress):
    """``rich.progress.Progress`` without a live display: plain, throttled lines (see the module doc).

    ``interval``: seconds between two lines of one task; ``get_time``: the clock (injectable for tests).
    """

    def __init__(
        self, *, console: Console, interval: float = LOG_INTERVAL, get_time: Callable[[], float] | None = None
    ) -> None:
        super().__init__(console=console, disable=True, get_time=get_time)
        self.interval = interval
        self._shown: dict[TaskID, tuple[float, tuple]] = {}  # when each task's last line was printed, and its state
        self._pending: set[TaskID] = set()  # tasks whose latest state has not been printed
        self._origin: dict[TaskID, tuple[float, float]] = {}  # time and steps at a task's first line (for the ETA)

    def add_task(
        self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
        visible: bool = True, **fields: Any,
    ) -> TaskID:  # fmt: skip
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._note(task_id)  # a task without a total yet (e.g. a round's size to come) waits for an update
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._note(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._note(task_id)

    def stop(self) -> None:
        for task_id in sorted(self._pending & set(self._tasks)):
            self._note(task_id, force=True)
        super().stop()

    def _remaining(self, task_id: TaskID, task: Task, now: float) -> float | None:
        """Seconds left at the mean pace since the task's first line (steps done before it, e.g. by a run
        that is resumed, do not count); None before any step or once done."""
        origin = self._origin.get(task_id)
        if origin is None or not task.total or task.completed >= task.total or task.completed <= origin[1]:
            return None
        return (now - origin[0]) / (task.completed - origin[1]) * (task.total - task.completed)

    def _note(self, task_id: TaskID, force: bool = False) -> None:
        """Print ``task_id``'s state if it is its first, last or ``interval`` after the one printed before."""
        now = self.get_time()
        with self._lock:
            task = self._tasks[task_id]
            state = (task.description, task.completed, task.total, task.fields.get("status"))
            line = log_line(task, self._remaining(task_id, task, now))
        shown = self._shown.get(task_id)
        if (shown is not None and state == shown[1]) or (shown is None and not task.total and not task.completed):
            self._pending.discard(task_id)  # nothing new (or nothing yet) to say
            return
        done = bool(task.total) and task.completed >= task.total
        if force or done or shown is None or now - shown[0] >= self.interval:
            self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
            self._shown[task_id] = (now, state)
            self._origin.setdefault(task_id, (now, task.completed))
            self._pending.discard(task_id)
        else:
            self._pending.add(task_id)


@contextmanager
def progress_bar(
    enabled: bool = True, *, target: Console | None = None, interval: float | None = None,
    get_time: Callable[[], float] | None = None,
) -> Iterator[Progress]:  # fmt: skip
    """A progress display: ``task = bar.add_task("training", total=n, status="")``, then ``bar.advance(task)``
    or ``bar.update(task, completed=k, status="loss 0.5")``.

    Rich bars where ``target`` (the shared console by default) is interactive, plain lines otherwise, at
    most every ``interval`` seconds (default ``LOG_INTERVAL``) by ``get_time`` (default ``log_clock``);
    nothing when not ``enabled``.
    """
    target = target or console
    if enabled and not is_interactive(target):
        interval = LOG_INTERVAL if interval is None else interval
        display: Progress = LogProgress(console=target, interval=interval, get_time=get_time or log_clock)
    else:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        display = Progress(*columns, console=target, disable=not enabled, transient=False, get_time=get_time)
    with display:
        yield display


def track(iterable: Iterable[T], description: str, total: float | None = None, enabled: bool = True) -> Iterator[T]:
    """``iterable``'s items, with our progress display advancing as they are taken."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(enabled) as bar:
        task_id = bar.add_task(description, total=total, status="")
        for item in iterable:
            yield item
            bar.advance(task_id)
