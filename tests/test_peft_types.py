"""Stage 3's PEFT types beyond the soft prompt (prefix, LoRA) on tiny models of all three families:
training, the saved adapter against PEFT's own forward, exact resume, paired steps with surgery."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from tests_support import RTE_PAIRS

from dawgen.classifier.combine import Combine, plan_steps
from dawgen.classifier.config import PEFT_DEFAULTS, OptimizerName, PeftKind, PromptTuneConfig
from dawgen.classifier.evaluate import EvalMethod, evaluate
from dawgen.classifier.peft_types import PeftAdapter, default_lora_targets
from dawgen.classifier.run import prompt_tune
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.config import ConfigError, config_from_dict
from dawgen.constants import ADAPTER_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.data.synthetic import SyntheticSet
from dawgen.models.loading import load_model
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAMILIES = [Family.DECODER, Family.SEQ2SEQ, Family.MASKED]
ADAPTERS = [PeftKind.PREFIX, PeftKind.LORA]
RTE = get_task("RTE")
EXAMPLES = RTE_PAIRS * 4
FLIPPED = [Example(e.text_a, "not_entailment" if e.label == "entailment" else "entailment", e.text_b) for e in EXAMPLES]


def small_config(**overrides) -> PromptTuneConfig:
    settings = dict(num_virtual_tokens=4, batch_size=4, max_steps=8, eval_every=4, precision="fp32", device="cpu")
    return PromptTuneConfig(**{**settings, **overrides})


def scorer_of(folder) -> VerbalizerScorer:
    return VerbalizerScorer(load_model(str(folder)), RTE, max_length=64, precision="fp32", device="cpu")


def peft_logits(model, scorer: VerbalizerScorer, item) -> torch.Tensor:
    """The label-word logits of one unpadded example by PEFT's own forward."""
    ids = torch.tensor([item.input_ids])
    if scorer.family is Family.SEQ2SEQ:
        start = torch.tensor([[scorer.model.config.decoder_start_token_id]])
        logits = model(input_ids=ids, decoder_input_ids=start).logits[:, 0]
    elif scorer.family is Family.DECODER:
        logits = model(input_ids=ids).logits[:, -1]
    else:
        logits = model(input_ids=ids).logits[:, item.answer_index]
    return logits[:, scorer.label_ids]


@pytest.mark.parametrize("kind", ADAPTERS, ids=str)
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_training_lowers_loss_and_leaves_the_backbone_as_it_was(kind, family, tiny_model_dirs):
    scorer = scorer_of(tiny_model_dirs[family])
    before = {name: value.clone() for name, value in scorer.model.state_dict().items()}
    # one label only: a random tiny model cannot read the texts, but an adapter can learn the prior
    items = scorer.encoder.encode_all([e for e in EXAMPLES if e.label == "entailment"])
    lr = 0.05 if kind is PeftKind.PREFIX else 0.01
    with PromptTrainer(scorer, small_config(peft=kind, max_steps=12, learning_rate=lr)) as trainer:
        assert trainer.prompt is None and scorer.adapter_model is not None
        assert trainer.num_trainable == sum(p.numel() for p in trainer.tuned) > 0
        start = trainer.evaluate(items)["loss"]
        trainer.train(items, items)
        assert trainer.evaluate(items)["loss"] < 0.9 * start
    assert scorer.adapter_model is None and not any("lora" in name for name, _ in scorer.model.named_modules())
    assert before.keys() == scorer.model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in scorer.model.state_dict().items())


@pytest.mark.parametrize("kind", ADAPTERS, ids=str)
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_saved_adapter_gives_peft_the_logits_dawgen_scored(kind, family, tiny_model_dirs, tmp_path):
    folder = tiny_model_dirs[family]
    loaded = load_model(str(folder))
    config = small_config(peft=kind, learning_rate=0.05)
    outcome = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, test=EXAMPLES, config=config, out_dir=tmp_path)
    adapter = tmp_path / ADAPTER_DIR
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["peft"] == kind.value and saved["config"]["learning_rate"] == 0.05
    # PEFT's own loading and forward, on a fresh copy of the base model
    scorer = scorer_of(folder)
    peft_model = PeftModel.from_pretrained(load_model(str(folder)).model, str(adapter)).eval()
    assert saved["trainable_parameters"] == outcome.result["trainable_parameters"] > 0
    with torch.no_grad():
        reference = torch.cat([peft_logits(peft_model, scorer, item) for item in scorer.encoder.encode_all(EXAMPLES)])
        loaded_adapter = PeftAdapter.load(scorer, adapter)
        ours = scorer.predict_logits(scorer.encoder.encode_all(EXAMPLES), batch_size=16)
        loaded_adapter.release()
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, scorer.predict_logits(scorer.encoder.encode_all(EXAMPLES)))  # it was applied
    # `dawgen evaluate` with the adapter reads its type and reproduces the run's test metrics
    for method in (EvalMethod.PROMPT, "adapter"):
        result = evaluate(loaded, RTE, EXAMPLES, method=method, adapter=adapter, precision="fp32", device="cpu")
        assert result["peft"] == kind.value
        assert result["test"]["accuracy"] == outcome.result["test"]["accuracy"]
        assert result["test"]["loss"] == pytest.approx(outcome.result["test"]["loss"], abs=1e-5)
    assert (outcome.prompt is not None) == (kind is PeftKind.PREFIX)
    again = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, test=EXAMPLES, config=config, out_dir=tmp_path)
    assert again.result == saved  # finished: read back, not rerun
    assert not any("lora" in name for name, _ in loaded.model.named_modules())


@pytest.mark.parametrize(
    "overrides",
    [dict(peft="lora", lora_dropout=0.2), dict(peft="prefix"), dict(peft="prefix", prefix_projection=True)],
    ids=["lora-dropout", "prefix", "prefix-projection"],
)
def test_resume_after_interrupt_matches_uninterrupted_run(overrides, tiny_model_dirs, tmp_path):
    scorer = scorer_of(tiny_model_dirs[Family.DECODER])
    items = scorer.encoder.encode_all(EXAMPLES)
    config = small_config(max_steps=10, eval_every=3, **overrides)

    def run(run_dir, on_step=None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)  # dropout draws from the global generator
        with PromptTrainer(scorer, config, run_dir) as trainer:
            trainer.train(items, items, on_step)
            return {**trainer.adapter.state(), "dev": torch.tensor(trainer.state.best_score)}

    reference = run(None)

    class Crash(Exception):
        pass

    def crash_at_8(step, record):
        if step == 8:
            raise Crash

    with pytest.raises(Crash):
        run(tmp_path, crash_at_8)
    torch.manual_seed(123)  # the checkpoint restores the generator's state
    resumed = run(tmp_path)
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, atol=0, rtol=0)
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 9, 10]


def test_paired_lora_step_with_surgery_never_opposes_the_real_gradient(tiny_model_dirs):
    scorer = scorer_of(tiny_model_dirs[Family.DECODER])
    real, syn = scorer.encoder.encode_all(EXAMPLES[:4]), scorer.encoder.encode_all(FLIPPED[:4])
    config = small_config(peft="lora", combine="paired", surgery=True, syn_batch_size=4)
    with PromptTrainer(scorer, config) as trainer:
        applied = []
        trainer.apply = applied.append
        steps = plan_steps(Combine.PAIRED, real, syn, batch_size=4, syn_batch_size=4, seed=0, num_labels=2,
                           balance_synthetic=False)  # fmt: skip
        torch.manual_seed(0)  # LoRA's B starts at zero: give it values, so both A and B get gradients
        for param in trainer.tuned:
            param.data.normal_(0, 0.3)
        record = trainer.take_step(next(steps))
        d_real, _ = trainer.gradient(real)
    assert isinstance(d_real, list) and [g.shape for g in d_real] == [p.shape for p in trainer.tuned]
    assert record["conflict"] and record["cosine"] < 0  # opposite labels on the same text
    flat = torch.cat([g.flatten() for g in applied[0]])
    real_flat = torch.cat([g.flatten() for g in d_real])
    assert torch.dot(flat, real_flat) >= 0.999 * real_flat.norm() ** 2
    assert trainer.conflict_rate == 1.0


def test_ours_runs_with_lora_and_logs_conflicts(tiny_model_dirs, tmp_path):
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    config = small_config(peft="lora", syn_batch_size=4, max_steps=4, eval_every=2)
    outcome = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, synthetic=SyntheticSet(FLIPPED), config=config,
                          out_dir=tmp_path, show_progress=False)  # fmt: skip
    result = outcome.result
    assert result["combine"] == "paired" and result["surgery"] and result["peft"] == "lora"
    assert result["conflict_rate"] is not None
    steps = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert all({"cosine", "conflict"} <= set(r) for r in steps if r["kind"] == "step")


def test_prompt_max_norm_rescales_only_the_long_vectors(tiny_model_dirs):
    scorer = scorer_of(tiny_model_dirs[Family.DECODER])
    items = scorer.encoder.encode_all(EXAMPLES)
    long = PromptTrainer(scorer, small_config(prompt_max_norm=0.5, max_steps=3, learning_rate=1.0))
    long.train(items, items)
    assert long.prompt.norm(dim=-1).max() <= 0.5 + 1e-5 and long.best_prompt.norm(dim=-1).max() <= 0.5 + 1e-5
    # a bound no vector reaches changes nothing
    free = PromptTrainer(scorer, small_config(max_steps=3)).train(items, items)
    bounded = PromptTrainer(scorer, small_config(max_steps=3, prompt_max_norm=1e6)).train(items, items)
    assert torch.equal(free, bounded)


def test_type_defaults_and_options():
    assert PEFT_DEFAULTS[PeftKind.PROMPT] == (OptimizerName.ADAFACTOR, 0.3)
    for kind in PeftKind:
        config = PromptTuneConfig(peft=kind).resolved(has_synthetic=False)
        assert (config.optimizer, config.learning_rate) == PEFT_DEFAULTS[kind]
    mine = PromptTuneConfig(peft="lora", optimizer="adafactor", learning_rate=0.5).resolved(has_synthetic=False)
    assert (mine.optimizer, mine.learning_rate) == (OptimizerName.ADAFACTOR, 0.5)
    options = {"peft": "lora", "lora_targets": "q_proj, v_proj", "lora_rank": "4"}
    config = config_from_dict(PromptTuneConfig, options)
    assert config.peft is PeftKind.LORA and config.lora_targets == ["q_proj", "v_proj"] and config.lora_rank == 4
    with pytest.raises(ConfigError, match="is not one of prompt, prefix, lora"):
        config_from_dict(PromptTuneConfig, {"peft": "adapter"})
    for bad, message in (({"lora_rank": 0}, "lora_rank"), ({"lora_dropout": 1.0}, "lora_dropout"),
                         ({"prompt_max_norm": 0}, "prompt_max_norm"), ({"learning_rate": -1}, "learning_rate"),
                         ({"lora_targets": ""}, "lora_targets")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            PromptTuneConfig(**bad)


def test_lora_targets_are_found_by_module_name(tiny_model_dirs):
    expected = {Family.DECODER: ["q_proj", "v_proj"], Family.SEQ2SEQ: ["q", "v"], Family.MASKED: ["query", "value"]}
    for family, names in expected.items():
        assert default_lora_targets(load_model(str(tiny_model_dirs[family])).model) == names
    with pytest.raises(ValueError, match="set lora_targets"):
        default_lora_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_options_of_each_type_reach_peft(tiny_model_dirs, tmp_path, monkeypatch):
    import peft.utils.save_and_load

    def no_hub(*args, **kwargs):
        raise AssertionError(f"saving an adapter looked the base model up on the Hub: {args}")

    monkeypatch.setattr(peft.utils.save_and_load, "check_file_exists_on_hf_hub", no_hub)
    scorer = scorer_of(tiny_model_dirs[Family.DECODER])
    config = small_config(peft="lora", lora_rank=2, lora_alpha=4, lora_targets=["q_proj"])
    with PromptTrainer(scorer, config) as trainer:
        names = [name for name, _ in trainer.adapter.named_parameters()]
        assert names and all("q_proj" in name for name in names)
        assert trainer.num_trainable == 2 * 2 * (32 + 32)  # 2 layers x (A: 2x32 + B: 32x2)
        trainer.adapter.save(tmp_path / "hub-named", "HuggingFaceTB/SmolLM2-135M-Instruct")  # offline: no lookup
        trainer.adapter.save(tmp_path, scorer.model_name)
        with pytest.raises(ValueError, match="already has a PEFT adapter"):
            PromptTrainer(scorer, small_config(peft="prefix"))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["r"], saved["lora_alpha"]) == ("LORA", 2, 4)
    assert saved["base_model_name_or_path"] == scorer.model_name
    with PromptTrainer(scorer, small_config(peft="prefix", prefix_projection=True, prefix_hidden_size=8)) as trainer:
        shapes = sorted(tuple(p.shape) for p in trainer.tuned)
        # 4 tokens of key/value width 16 (2 of 4 heads), then the MLP 16 -> 8 -> 2 layers x 2 x 16
        assert shapes == [(4, 16), (8,), (8, 16), (64,), (64, 8)]
        with pytest.raises(ValueError, match="prefix_projection"):
            trainer.adapter.start_from(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="start prefix has shape"):
        PromptTrainer(scorer, small_config(peft="prefix"), start_prompt=torch.zeros(3, 5))
    assert scorer.adapter_model is None  # a failed start leaves nothing attached


def test_run_config_and_cli_take_the_peft_type(tiny_model_dirs, tmp_path):
    from typer.testing import CliRunner

    from dawgen.cli import app
    from dawgen.data.sources import demo_dir
    from dawgen.pipeline import RunConfig
    from dawgen.pipeline.methods import parse_method

    run = RunConfig(tasks=["RTE"], data="x", classifier={"peft": "lora", "lora_rank": 4})
    for method in ("pt", "ours", "fewgen+merged"):
        assert run.classifier_config(parse_method(method), 13).peft is PeftKind.LORA
    demo = demo_dir()
    args = ["prompt-tune", "--task", str(demo / "task.yaml"), "--data", str(demo), "--model",
            str(tiny_model_dirs[Family.MASKED]), "--peft", "prefix", "--steps", "2", "--eval-every", "1",
            "--precision", "fp32", "--out", str(tmp_path), "--set", "batch_size=4"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["peft"] == "prefix" and saved["config"]["optimizer"] == "adamw"
    assert json.loads((tmp_path / ADAPTER_DIR / "adapter_config.json").read_text())["peft_type"] == "PREFIX_TUNING"


@pytest.mark.parametrize(
    ("family", "kind"),
    [(Family.DECODER, PeftKind.PROMPT), (Family.DECODER, PeftKind.PREFIX), (Family.DECODER, PeftKind.LORA),
     (Family.SEQ2SEQ, PeftKind.LORA), (Family.MASKED, PeftKind.LORA)],
    ids=lambda value: str(getattr(value, "value", value)),
)  # fmt: skip
def test_a_run_that_owns_its_model_stores_it_in_bf16_and_trains_the_same(family, kind, tiny_model_dirs, tmp_path):
    """owns_model under bf16 autocast: the frozen linear layers are stored in bf16 once the adapter is attached,
    and the paired steps give the same saved adapter and test metrics, bit for bit, as fp32 weights cast by
    autocast on every forward."""
    config = small_config(peft=kind, precision="bf16", syn_batch_size=4, max_steps=4, eval_every=2)
    results, dtypes = {}, {}
    for owns in (False, True):
        loaded = load_model(str(tiny_model_dirs[family]))
        results[owns] = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, synthetic=SyntheticSet(FLIPPED), test=EXAMPLES,
                                    config=config, out_dir=tmp_path / str(owns), show_progress=False,
                                    owns_model=owns).result  # fmt: skip
        dtypes[owns] = {m.weight.dtype for m in loaded.model.modules() if type(m) is torch.nn.Linear}
    assert dtypes[False] == {torch.float32} and torch.bfloat16 in dtypes[True]  # (a tied LM head stays fp32)
    assert results[True]["test"] == results[False]["test"] and results[True]["dev"] == results[False]["dev"]
    saved = {owns: sorted((tmp_path / str(owns) / ADAPTER_DIR).glob("*.safetensors")) for owns in (False, True)}
    assert saved[False] and [p.name for p in saved[False]] == [p.name for p in saved[True]]
    for plain, stored in zip(saved[False], saved[True], strict=True):
        plain, stored = load_file(plain), load_file(stored)
        assert plain.keys() == stored.keys() and all(torch.equal(plain[k], stored[k]) for k in plain)
