"""YAML config files: ``extends`` merges a file into the one it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dawgen.classifier.config import PromptTuneConfig
from dawgen.cli.common import split_run_options
from dawgen.config import ConfigError, config_from_dict, load_yaml, merge_options
from dawgen.pipeline.config import RunConfig


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_merges_sections_and_replaces_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "tasks: [RTE]\nseeds: [13, 42]\nclassifier:\n  max_steps: 40\n  batch_size: 4\n")
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\nseeds: [13]\nclassifier:\n  max_steps: 10\n")
    assert load_yaml(child) == {"tasks": ["RTE"], "seeds": [13], "classifier": {"max_steps": 10, "batch_size": 4}}


def test_extends_chains_and_refuses_cycles(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\nx: 1\n")
    write(tmp_path / "b.yaml", "extends: c.yaml\ny: 2\n")
    write(tmp_path / "c.yaml", "z: 3\n")
    assert load_yaml(tmp_path / "a.yaml") == {"x": 1, "y": 2, "z": 3}
    write(tmp_path / "c.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml(tmp_path / "a.yaml")


def test_extends_names_the_file_it_cannot_find(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", "extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_yaml(child)
    write(child, "extends: [a.yaml]\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: option 'extends' must be the path"):
        load_yaml(child)


def test_merge_options_leaves_its_inputs_alone() -> None:
    base = {"a": {"b": 1, "c": 2}}
    override = {"a": {"b": 5}, "d": 0}
    assert merge_options(base, override) == {"a": {"b": 5, "c": 2}, "d": 0}
    assert base == {"a": {"b": 1, "c": 2}}


CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("name", ["small", "table1-small", "paper"])
def test_shipped_run_configs_are_valid(name: str) -> None:
    config = config_from_dict(RunConfig, load_yaml(CONFIGS / f"{name}.yaml"), name)
    assert config.parsed_methods() and config.specs()


def test_table1_config_reuses_the_small_protocols_stages() -> None:
    small = load_yaml(CONFIGS / "small.yaml")
    table1 = load_yaml(CONFIGS / "table1-small.yaml")
    for section in ("tasks", "seeds", "out", "generator", "generation", "classifier", "classifier_model"):
        assert table1[section] == small[section], section
    assert set(small["methods"]) < set(table1["methods"])
    assert set(table1["baselines"]) <= set(table1["methods"])


def test_mnli_source_config_is_a_prompt_tuning_config() -> None:
    run, options = split_run_options(load_yaml(CONFIGS / "mnli-source.yaml"), required=("task", "data"))
    assert run["task"] == "MNLI" and run["k"] == 128
    assert config_from_dict(PromptTuneConfig, options, "mnli-source").max_steps == 100


def test_booleans_from_set_text_are_read_and_other_text_is_refused():
    from dawgen.synthesis.config import GenerationConfig

    assert config_from_dict(GenerationConfig, {"reuse_pool": "true"}).reuse_pool is True  # --set reuse_pool=true
    assert config_from_dict(GenerationConfig, {"reuse_pool": "False"}).reuse_pool is False
    with pytest.raises(ConfigError, match="expected true or false, got 'yes please'"):
        config_from_dict(GenerationConfig, {"reuse_pool": "yes please"})
