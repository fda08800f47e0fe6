"""The task table: built-in tasks as data, user tasks from YAML."""

from dawgen.tasks.registry import BUILTIN_TASKS, get_task, load_task_file, task_from_dict
from dawgen.tasks.schema import Family, GeneratorText, TaskError, TaskSpec, render

__all__ = [
    "BUILTIN_TASKS", "Family", "GeneratorText", "TaskError", "TaskSpec",
    "get_task", "load_task_file", "render", "task_from_dict",
]  # fmt: skip
