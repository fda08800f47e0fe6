"""The dataset card of an exported synthetic set: a YAML header with ``dataset_info`` and ``configs`` as the
Hugging Face hub expects, then Markdown recording where the set came from (``dawgen.synthesis.export``
builds the provenance it reads)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

CARD_FILE = "README.md"
PROVENANCE_FILE = "provenance.json"
DATA_FILES = {"hf": "data/train-*", "csv": "train.csv", "jsonl": "train.jsonl"}  # hf: the layout push_to_hub writes
PAPER = "Guo, Du, Li, Miao: Generating Synthetic Datasets for Few-shot Prompt Tuning (COLM 2024)"


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M"


def card_header(dataset: Dataset, provenance: dict[str, Any], fmt: str) -> str:
    """The card's YAML header: name, tags, ``dataset_info`` (features and split) and ``configs`` (data files)."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        pretty_name=pretty_name(provenance), task_categories=["text-classification"],
        size_categories=[_size_category(provenance["rows"])], tags=["synthetic", "dawgen", "few-shot"],
    )  # fmt: skip
    DatasetInfosDict({"default": dataset.info}).to_dataset_card_data(data)
    files = [{"split": "train", "path": DATA_FILES[fmt]}]
    MetadataConfigs({"default": {"data_files": files}}).to_dataset_card_data(data)
    return data.to_yaml()


def pretty_name(provenance: dict[str, Any]) -> str:
    generator = provenance["generator"] or {}
    made_by = f"{generator['variant']} generator" if generator.get("variant") else provenance["source"]["kind"]
    return f"Synthetic {provenance['task']['name']} ({made_by})"


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if value is not None else "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def card_markdown(provenance: dict[str, Any], fmt: str) -> str:
    """The card's Markdown: what the set is, where it came from, its rows and columns, how to load it."""
    task, generator, kshot = provenance["task"], provenance["generator"], provenance["kshot"]
    labels = ", ".join(f"`{label}` ({i})" for i, label in enumerate(task["labels"]))
    rows: list[tuple[str, str]] = [
        ("task", f"{task['name']} ({'sentence pair' if task['pair'] else 'single sentence'}; labels {labels})"),
        ("source", f"{_code(provenance['source']['path'])} ({provenance['source']['kind']})"),
    ]
    if provenance["source"]["synthetic_key"]:
        rows.append(("synthetic-set key", _code(provenance["source"]["synthetic_key"])))
    if generator:
        rows += [
            ("generator model", _code(generator["model"])),
            ("generator variant", generator["variant"] or "-"),
            ("generator id", f"{_code(generator['id'])} (content hash of its label prompts)"),
            ("generator folder", f"{_code(generator['folder'])} (run key {_code(generator['run_key'])})"),
        ]
        if generator.get("config"):
            options = ("epochs", "learning_rate", "num_prompt_tokens", "lambda_dist", "seed")
            chosen = {k: generator["config"][k] for k in options if k in generator["config"]}
            rows.append(("generator tuning", ", ".join(f"{k} {v}" for k, v in chosen.items())))
    if any(kshot[key] is not None for key in ("k", "seed", "data")):
        parts = [f"k = {kshot['k']}" if kshot["k"] is not None else None,
                 f"seed {kshot['seed']}" if kshot["seed"] is not None else None,
                 f"data {_code(kshot['data'])}" if kshot["data"] else None]  # fmt: skip
        rows.append(("k-shot split", ", ".join(p for p in parts if p) + f" (from the {kshot['from']})"))
    generation = provenance["generation"]
    if generation and generation.get("config"):
        config = generation["config"]
        options = ("per_label", "decoding", "top_p", "temperature", "max_new_tokens", "repetition_penalty",
                   "copy_threshold", "dedup", "label_consistency", "top_up_rounds", "seed")  # fmt: skip
        rows.append(("generation", ", ".join(f"{k} {config[k]}" for k in options if k in config)))
        if generation.get("pool"):
            rows.append(("first-sentence pool", f"{_code(generation['pool'][0])} ({generation['pool'][1]} sentences)"))
    filters = provenance["filters"]
    if filters:
        rejected = ", ".join(f"{reason} {n}" for reason, n in (filters.get("filters") or {}).items() if n) or "none"
        counts = f"{filters['attempted']} attempted, {filters['written']} written"
        rows.append(
            ("generated / kept", f"{counts} (target {filters['target_per_label']} per label); rejected: {rejected}")
        )
    oracle = provenance["oracle"]
    if oracle:
        removed = ", ".join(f"{k} {v}" for k, v in (oracle.get("removed") or {}).items())
        rows.append(("oracle sample", f"{oracle.get('written')} gold-labelled pool rows of {oracle.get('pool_rows')}; "
                                      f"removed: {removed}"))  # fmt: skip
    copies = f"{provenance['verbatim_copies']} verbatim copies (second sentence = first)"
    if provenance["dropped_copies"]:
        copies += ", dropped from this export"
    elif provenance["verbatim_copies"]:
        copies += ", kept (dawgen's loaders drop them when training)"
    else:
        copies = "no verbatim copies (second sentence = first)"
    rows.append(("rows", f"{provenance['rows']}; {copies}" if task["pair"] else str(provenance["rows"])))
    quality = provenance["quality"]
    if quality:
        matched, real = quality.get("diversity_size_matched") or {}, quality.get("diversity_real") or {}
        line = (
            f"distinct-2 {_num(matched.get('distinct_2'))} (real {_num(real.get('distinct_2'))}), self-BLEU "
            f"{_num(matched.get('self_bleu'))} (real {_num(real.get('self_bleu'))}) at the real set's size; "
            f"label max/min {quality.get('max_over_min') or '-'}"
        )
        if quality.get("verbatim_rate") is not None:
            line += f"; copies {_pct(quality['verbatim_rate'])} verbatim, {_pct(quality.get('near_copy_rate'))} near"
        if quality.get("centroid_cosine"):
            cosines = ", ".join(f"{label} {_num(v)}" for label, v in quality["centroid_cosine"].items())
            line += f"; MiniLM centroid cosine with the real label: {cosines}"
        rows.append(("quality (against the real k-shot set)", line))
    table = ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    per_label = ["| label | id | rows |", "|---|---|---|"]
    per_label += [f"| `{label}` | {i} | {provenance['per_label'][label]} |" for i, label in enumerate(task["labels"])]
    from_pool = task["pair"] and provenance["generation"] is not None
    columns = ["- `text_a`: the first sentence" + (" (from the pool of first sentences)" if from_pool else "")]
    if task["pair"]:
        columns.append("- `text_b`: the second sentence" + (" (generated)" if provenance["oracle"] is None else ""))
    columns.append("- `label`: " + ("a `ClassLabel`" if fmt == "hf" else "the label name; a `ClassLabel` in the "
                                    "features above") + f" with names {', '.join(task['labels'])}")  # fmt: skip
    columns += [f"- `{name}` ({dtype})" for name, dtype in provenance["metadata_columns"].items()]
    if provenance["left_out_columns"]:
        columns.append(f"- left out (not one scalar type): {', '.join(provenance['left_out_columns'])}")
    load = {
        "hf": 'from datasets import load_from_disk\n\ndataset = load_from_disk("THIS_FOLDER")  # on the hub: '
              'load_dataset("REPO", split="train")',
        "csv": 'from datasets import load_dataset\n\ndataset = load_dataset("THIS_FOLDER", split="train")',
        "jsonl": 'from datasets import load_dataset\n\ndataset = load_dataset("THIS_FOLDER", split="train")',
    }[fmt]  # fmt: skip
    return "\n".join([
        f"# {pretty_name(provenance)}", "",
        f"A label-conditioned synthetic training set for few-shot classification, exported by dawgen "
        f"(after {PAPER}). Every fact below is also in `{PROVENANCE_FILE}`.", "",
        "## Provenance", "", *table, "",
        "## Rows per label", "", *per_label, "",
        "## Columns", "", *columns, "",
        "## Loading", "", "```python", load, "```", "",
        "As training data for dawgen: `dawgen prompt-tune ... --synthetic THIS_FOLDER` (or `synthetic_file` of "
        "the `setfit+syn` baseline).", "",
    ])  # fmt: skip


def card_text(dataset: Dataset, provenance: dict[str, Any], fmt: str) -> str:
    header = card_header(dataset, provenance, fmt).rstrip("\n")
    return f"---\n{header}\n---\n\n{card_markdown(provenance, fmt)}"


# ---------------------------------------------------------------- the hub
