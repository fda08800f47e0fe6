"""Stage 2 as one call: a tuned generator and a pool in, a filtered synthetic set out.

Sharded with ``accelerate``: every process (``accelerate launch --num_processes N -m dawgen.cli
generate ...``; on CPUs ``accelerate launch --multi_gpu --num_processes N ... --device cpu`` or
``torchrun --nproc_per_node N -m dawgen.cli generate ...``, as accelerate's ``--cpu`` starts one
process only) runs its share of each round's batches (see ``plan``) and appends to its own part file
(see ``writer``) beside the output, so the processes must share that folder; the main process merges
the parts. A run restarted with the same settings continues where it stopped, with any number of processes.
The filters that learn from the k-shot training split (``kshot_filters``) get it as ``train``; what they
learn from (its fingerprint, the classifier's content hash) is part of the settings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from dawgen.config import to_dict
from dawgen.data.example import Example
from dawgen.data.sources import demo_task, load_fewshot
from dawgen.generator.artifacts import PROMPTS_FILE, TunedGenerator, load_generator
from dawgen.models.loading import load_model
from dawgen.models.precision import precision_record
from dawgen.models.processes import process_device, process_state
from dawgen.progress import progress_bar
from dawgen.synthesis.config import GenerationConfig
from dawgen.synthesis.kshot_filters import ClassifierSource, KShotFilters, check_kshot_inputs, kshot_settings
from dawgen.synthesis.plan import (
    GAVE_UP_ATTEMPTS,
    GAVE_UP_POOL,
    GAVE_UP_ROUNDS,
    give_up_reason,
    make_batches,
    plan_round,
    share,
)
from dawgen.synthesis.pool import Pool, load_pool
from dawgen.synthesis.samples import SampleMaker
from dawgen.synthesis.writer import (
    PartWriter,
    check_run_settings,
    finalize,
    part_path,
    parts_dir,
    read_parts,
    summary_path,
    tally,
)
from dawgen.tasks.registry import get_task
from dawgen.tasks.schema import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class GenerationOutcome:
    """A finished generation run: its summary and the synthetic set's path."""

    summary: dict[str, Any]
    path: Path


def resolve_task(generator: TunedGenerator, task: str | TaskSpec | None) -> TaskSpec:
    """The generator's task (``task`` overrides the name saved with it), checked against the generator."""
    if task is None and generator.task == demo_task().name:
        spec = demo_task()
    else:
        spec = get_task(task if task is not None else generator.task)
    if tuple(spec.labels) != tuple(generator.labels) or spec.pair != generator.pair:
        raise ValueError(
            f"task {spec.name!r} (labels {list(spec.labels)}) does not match the generator's "
            f"(task {generator.task!r}, labels {list(generator.labels)})"
        )
    if spec.pair and spec.generator.connector != generator.connector:
        raise ValueError(
            f"task {spec.name!r} joins the sentences with {spec.generator.connector!r}, "
            f"but the generator was tuned with {generator.connector!r}"
        )
    return spec


def generator_id(folder: str | Path) -> str:
    """A short content hash of a tuned generator's label prompts."""
    return hashlib.sha256((Path(folder) / PROMPTS_FILE).read_bytes()).hexdigest()[:12]


def _process_state(config: GenerationConfig) -> tuple[PartialState, torch.device]:
    return process_state(config.device), process_device(config.device)


def _saved_summary(out: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a finished run with the same settings; an error if it had other settings."""
    path = summary_path(out)
    if not (path.exists() and out.exists()):
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    if summary.get("settings") != settings:
        raise ValueError(f"{out} already holds a finished generation run with other settings; choose another --out")
    return summary


def generate_synthetic(
    generator_dir: str | Path,
    out: str | Path,
    config: GenerationConfig | None = None,
    *,
    pool: str | Path | None = None,
    pool_column: str | None = None,
    task: str | TaskSpec | None = None,
    model: str | None = None,
    train: Sequence[Example] | str | Path | None = None,
    k: int = 16,
    classifier: ClassifierSource | None = None,
    show_progress: bool = True,
) -> GenerationOutcome:
    """Generate ``config.per_label`` filtered samples per label with the tuned generator in ``generator_dir``.

    Sentence-pair tasks condition on first sentences from ``pool`` (a file, a data root, ``hf:NAME``;
    the demo task's own pool by default). ``model`` overrides the base model saved with the generator.
    ``train``: the k-shot training split the judge and the relatedness floor learn from (examples, or a
    k-shot folder, data root or file read with ``config.seed`` and ``k``; read only when a filter needs it);
    ``classifier``: the stage-3 classifier of ``consistency_filter: classifier``, loaded by the caller's layer.
    """
    config = config or GenerationConfig()
    out = Path(out)
    generator = load_generator(generator_dir)
    spec = resolve_task(generator, task)
    kshot_train = _kshot_train(spec, train, config, k)
    check_kshot_inputs(config, spec, kshot_train, classifier)
    first_sentences = load_pool(spec, pool, config.seed, pool_column) if spec.pair else None
    model_spec = model or generator.base_model
    gen_id = generator_id(generator_dir)
    settings = {
        "generator": gen_id, "model": model_spec, "task": spec.name,
        "pool": None if first_sentences is None else [first_sentences.source, len(first_sentences.sentences)],
        "config": {k: v for k, v in to_dict(config).items() if k != "device"},  # resuming elsewhere is fine
        **kshot_settings(config, spec, kshot_train, classifier),  # nothing when no filter learns from them
    }  # fmt: skip
    saved = _saved_summary(out, settings)
    if saved is not None:
        return GenerationOutcome(saved, out)
    _warn_if_pool_is_short(first_sentences, config)
    state, device = _process_state(config)
    loaded = load_model(model_spec)
    loaded.model.to(device)
    folder = parts_dir(out)
    check_run_settings(folder, settings, write=state.is_main_process)  # every process raises on a mismatch
    started = time.perf_counter()
    with PartWriter(part_path(folder, state.process_index)) as writer:
        state.wait_for_everyone()  # every part's partial last line is cut before anyone reads
        before = set(read_parts(folder)) if state.is_main_process else set()
        kshot = KShotFilters.build(config, spec, kshot_train, classifier, device)  # the encoder, loaded once
        maker = SampleMaker(loaded, spec, generator, config, first_sentences, gen_id, device, kshot)
        rounds = _run_rounds(state, folder, writer, maker, spec, config, first_sentences, show_progress)
    if state.is_main_process:
        records = sorted(read_parts(folder).values(), key=lambda r: r["index"])
        gave_up = _gave_up(records, spec, config, first_sentences)
        new_tokens = sum(r["num_tokens"] for r in records if r["index"] not in before)
        seconds = time.perf_counter() - started
        info = {
            "settings": settings,
            "task": spec.name,
            "generator": {"path": str(generator_dir), "id": gen_id, "variant": generator.config.variant.value},
            "config": to_dict(config),
            "precision": f"{maker.precision} on {device}",
            "compute": precision_record(device, None, name=maker.precision),
            "processes": state.num_processes,
            "rounds": rounds,
            "max_attempts_per_label": config.attempts_bound,
            **({"kshot_filters": kshot.describe()} if kshot is not None else {}),
            "this_run": {
                "seconds": round(seconds, 2),
                "generated_tokens": new_tokens,
                "tokens_per_second": round(new_tokens / max(seconds, 1e-9), 1),
            },
        }
        summary = finalize(out, records, spec.labels, config.per_label, config.dedup, info, gave_up)
        _warn_about_shortfalls(summary)
    state.wait_for_everyone()
    return GenerationOutcome(json.loads(summary_path(out).read_text(encoding="utf-8")), out)


def _kshot_train(
    spec: TaskSpec, train: Sequence[Example] | str | Path | None, config: GenerationConfig, k: int
) -> list[Example] | None:
    """The k-shot training split, when a filter learns from it (read from a folder or file with the run's seed)."""
    if train is None or not config.needs_kshot_train:
        return None
    if isinstance(train, str | Path):
        return load_fewshot(spec, train, seed=config.seed, k=k).train
    return list(train)


def _warn_if_pool_is_short(pool: Pool | None, config: GenerationConfig) -> None:
    if pool is not None and not config.reuse_pool and len(pool.sentences) < config.per_label:
        log.warning(
            "the pool has %d distinct first sentences, fewer than the %d samples wanted per label: each label "
            "gets at most %d (reuse_pool lets first sentences repeat)",
            len(pool.sentences), config.per_label, len(pool.sentences),
        )  # fmt: skip


def _available_slots(pool: Pool | None, config: GenerationConfig) -> int | None:
    """How many first sentences one label may use (None: no limit)."""
    return None if pool is None or config.reuse_pool else len(pool.sentences)


def _gave_up(
    records: list[dict[str, Any]], spec: TaskSpec, config: GenerationConfig, pool: Pool | None
) -> dict[str, str]:
    """The labels that ended short of ``per_label`` kept samples, and why."""
    available = _available_slots(pool, config)
    reasons = {
        label: give_up_reason(entry, config.per_label, available, config.attempts_bound)
        for label, entry in tally(records, spec.labels, config.dedup).items()
    }
    return {label: reason for label, reason in reasons.items() if reason is not None}


GAVE_UP_HINTS = {
    GAVE_UP_ATTEMPTS: "the bound max_attempts_per_label reached",
    GAVE_UP_POOL: "every first sentence of the pool used; reuse_pool lets them repeat",
    GAVE_UP_ROUNDS: "the top_up_rounds allowed are over",
}


def _warn_about_shortfalls(summary: dict[str, Any]) -> None:
    for label, reason in summary["gave_up"].items():
        counts = summary["labels"][label]
        dropped = ", ".join(f"{name} {n}" for name, n in counts["rejected"].items() if n) or "none"
        log.warning(
            "generation gave up on label %r with %d of %d samples after %d attempts (%s); dropped: %s",
            label, counts["written"], summary["target_per_label"], counts["attempted"],
            GAVE_UP_HINTS.get(reason, reason), dropped,
        )  # fmt: skip


def _run_rounds(
    state: PartialState, folder: Path, writer: PartWriter, maker: SampleMaker, spec: TaskSpec,
    config: GenerationConfig, pool: Pool | None, show_progress: bool,
) -> int:  # fmt: skip
    """Generate round after round until every label has its samples or has given up (see ``plan``);
    returns the number of rounds that generated anything."""
    available = _available_slots(pool, config)
    limit = None if config.top_up_rounds is None else config.top_up_rounds + 1
    with progress_bar(show_progress and state.is_main_process) as bar:
        bar_task = bar.add_task(f"generate {spec.name}", total=0, status="")
        for round_index in itertools.count():
            if limit is not None and round_index >= limit:
                return limit
            records = read_parts(folder)
            earlier = tally([r for r in records.values() if r["round"] < round_index], spec.labels, config.dedup)
            items = plan_round(round_index, earlier, spec.labels, config.per_label, available, config.attempts_bound,
                               min_top_up=config.batch_size)  # fmt: skip
            if not items:
                return round_index
            kept = sum(min(len(entry.kept), config.per_label) for entry in earlier.values())
            mine = share(make_batches(items, maker.context_length, config.batch_size), *_rank(state))
            status = f"round {round_index}" + (f", {kept}/{config.per_label * len(spec.labels)} kept" if kept else "")
            bar.update(bar_task, total=bar.tasks[0].total + sum(map(len, mine)), status=status)
            for batch in mine:
                missing = [item for item in batch if item.index not in records]
                if missing:  # the whole batch again: the same rows give the same samples
                    made = maker.make(batch)
                    writer.write(made[item.index] for item in missing)
                bar.advance(bar_task, len(batch))
            state.wait_for_everyone()
    raise AssertionError("unreachable")  # pragma: no cover


def _rank(state: PartialState) -> tuple[int, int]:
    return state.process_index, state.num_processes
