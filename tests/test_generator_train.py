"""Generator tuning, the run: training, best-by-dev, artifacts, resume, diagnostics, CLI.

Pinned to fp32 (``precision="fp32"``): best-by-dev and resume compare losses to 1e-5.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from dawgen.cli import app
from dawgen.constants import CHECKPOINT_DIR, GENERATOR_DIR, METRICS_FILE, RESULT_FILE, TRAINING_PLOT
from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import GeneratorConfig, GeneratorTrainer, load_generator, save_generator, tune_generator
from dawgen.generator.diagnostics import dev_metrics, label_log_likelihoods, weight_stats
from dawgen.generator.prompts import score_targets
from dawgen.generator.sequences import collate
from dawgen.models.loading import load_model
from dawgen.models.precision import machine_record
from dawgen.tasks import Family

TASK = demo_task()
SPLIT = load_fewshot(TASK, demo_dir())
TRAIN = [*SPLIT.train[:4], *SPLIT.train[16:20]]  # 4 per label: 2 steps per epoch
DEV = [*SPLIT.dev[:3], *SPLIT.dev[16:19]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config(**overrides) -> GeneratorConfig:
    settings = {"num_prompt_tokens": 3, "epochs": 2, "precision": "fp32", "device": "cpu", "learning_rate": 0.05}
    return GeneratorConfig(**{**settings, **overrides})


def state_of(trainer: GeneratorTrainer) -> dict[str, torch.Tensor]:
    tensors = {"prompts": trainer.prompts.weight.detach().clone(), "best": trainer.best_prompts.clone()}
    if trainer.weight_net is not None:
        tensors |= {f"w.{k}": v.clone() for k, v in trainer.weight_net.state_dict().items()}
    return tensors


@pytest.mark.parametrize("variant", ["plain", "fewgen", "dawgen"])
def test_training_lowers_the_lm_loss_and_keeps_the_best_epoch(loaded, variant):
    frozen = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    trainer = GeneratorTrainer(loaded, TASK, small_config(variant=variant, epochs=3))
    generator = trainer.train(TRAIN, TRAIN)
    history = trainer.state.history
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert min(r["dev_loss"] for r in history[1:]) < history[0]["dev_loss"]
    best = min(history, key=lambda r: r["dev_loss"])
    assert generator.info["best_epoch"] == best["epoch"] == trainer.state.best_epoch
    assert trainer.evaluate(trainer.builder.encode_all(TRAIN), generator.prompts)["dev_loss"] == pytest.approx(
        best["dev_loss"], rel=1e-5
    )
    assert (generator.weight_net is None) == (variant == "plain")
    assert (trainer.weight_entropy_summary() is None) == (variant == "plain")
    assert all(torch.equal(frozen[k], v) for k, v in loaded.model.state_dict().items())


def test_a_trainer_that_owns_its_model_stores_it_in_bf16_and_trains_the_same(tiny_decoder_dir):
    """owns_model under bf16 autocast: the frozen linear layers are stored in bf16, and the bi-level steps give
    the same prompts and weight net, bit for bit, as with the fp32 weights autocast casts on every forward."""
    config = small_config(precision="bf16", epochs=1)
    states = {}
    for owns in (False, True):
        trainer = GeneratorTrainer(load_model(str(tiny_decoder_dir)), TASK, config, owns_model=owns)
        down = trainer.model.model.layers[0].mlp.down_proj.weight
        assert down.dtype is (torch.bfloat16 if owns else torch.float32)
        trainer.train(TRAIN, DEV)
        states[owns] = state_of(trainer)
    assert all(torch.equal(states[False][k], states[True][k]) for k in states[False])


def test_save_and_load_round_trip(loaded, tmp_path):
    trainer = GeneratorTrainer(loaded, TASK, small_config(epochs=1))
    generator = trainer.train(TRAIN, DEV)
    save_generator(generator, tmp_path / "gen")
    back = load_generator(tmp_path / "gen")
    assert torch.equal(back.prompts, generator.prompts) and back.prompts.shape == (2, 3, loaded.embedding_dim)
    assert back.config == generator.config and back.labels == TASK.labels and back.info == generator.info
    assert (back.base_model, back.task, back.connector, back.pair) == (loaded.name, TASK.name, "\nSentence 2:", True)
    state, loaded_state = generator.weight_net.state_dict(), back.weight_net.state_dict()
    assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)
    features = torch.randn(5, loaded.embedding_dim)
    assert torch.equal(back.weight_net(features), generator.weight_net(features))
    assert torch.equal(back.prompt_for("not_entailment"), generator.prompts[1])
    plain = GeneratorTrainer(loaded, TASK, small_config(variant="plain", epochs=1)).best_generator()
    save_generator(plain, tmp_path / "plain")
    assert load_generator(tmp_path / "plain").weight_net is None
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path)


def test_resume_after_an_interrupt_matches_an_uninterrupted_run(loaded, tmp_path):
    config = small_config(epochs=3)
    reference = GeneratorTrainer(loaded, TASK, config)
    reference.train(TRAIN, DEV)

    class Crash(Exception):
        pass

    def crash_at_5(step, record):
        if step == 5:  # mid epoch 3: the last checkpoint is at step 4
            raise Crash

    with pytest.raises(Crash):
        GeneratorTrainer(loaded, TASK, config, tmp_path).train(TRAIN, DEV, crash_at_5)
    resumed = GeneratorTrainer(loaded, TASK, config, tmp_path)
    resumed.train(TRAIN, DEV)
    ours, theirs = state_of(resumed), state_of(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert resumed.state.history == reference.state.history
    assert vars(resumed.state) == vars(reference.state)  # the weight-entropy sums too: exact after a resume
    assert resumed.weight_entropy_summary() == reference.weight_entropy_summary()
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 7))
    assert [r["epoch"] for r in records if r["kind"] == "eval"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="other settings"):
        GeneratorTrainer(loaded, TASK, small_config(epochs=3, lambda_dist=0.5), tmp_path).train(TRAIN, DEV)


def test_finite_difference_run_resumes_and_round_trips(loaded, tmp_path):
    config = small_config(epochs=3, hypergradient="finite-difference", fd_radius=5e-3)
    reference = GeneratorTrainer(loaded, TASK, config)
    reference.train(TRAIN, DEV)

    class Crash(Exception):
        pass

    def crash_at_3(step, record):
        if step == 3:  # mid epoch 2: the last checkpoint is at step 2
            raise Crash

    with pytest.raises(Crash):
        GeneratorTrainer(loaded, TASK, config, tmp_path / "run").train(TRAIN, DEV, crash_at_3)
    resumed = GeneratorTrainer(loaded, TASK, config, tmp_path / "run")
    generator = resumed.train(TRAIN, DEV)
    ours, theirs = state_of(resumed), state_of(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert resumed.state.history == reference.state.history
    save_generator(generator, tmp_path / "gen")
    back = load_generator(tmp_path / "gen").config
    assert back == config and (back.hypergradient, back.fd_radius) == ("finite-difference", 5e-3)
    with pytest.raises(ValueError, match="other settings"):  # an exact run does not resume a finite-difference one
        GeneratorTrainer(loaded, TASK, small_config(epochs=3), tmp_path / "run").train(TRAIN, DEV)


def test_cli_tune_generator_hypergradient(tiny_decoder_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["tune-generator", "--task", str(demo_dir() / "task.yaml"), "--data", str(demo_dir()),
            "--model", str(tiny_decoder_dir), "--epochs", "1", "--prompt-tokens", "2", "--out", str(out),
            "--precision", "fp32", "--set", "per_label_batch=8", "--hypergradient", "finite-difference",
            "--set", "fd_radius=0.02"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = load_generator(out / GENERATOR_DIR).config
    assert (saved.hypergradient, saved.fd_radius, saved.variant) == ("finite-difference", 0.02, "dawgen")
    bad = runner.invoke(app, [*args[:-4], "--hypergradient", "jvp"])
    assert bad.exit_code == 2 and "not one of" in " ".join(bad.output.split())


def test_diagnostics(loaded):
    trainer = GeneratorTrainer(loaded, TASK, small_config())
    sequences = trainer.builder.encode_all(DEV)
    record = trainer.take_step(sequences[:2] + sequences[3:5])
    assert {"lm", "dist", "disc_lookahead", "weight_net_grad_norm", "weight_entropy", "top_tokens"} <= set(record)
    assert 0 < record["weight_entropy_ratio"] <= 1 and len(record["top_tokens"]) == 5
    assert record["top_tokens"][0][1] >= record["top_tokens"][-1][1]
    batch = collate(sequences[:2], 3, trainer.pad_id)
    stats = weight_stats(torch.ones(batch.target_ids.numel()), batch, loaded.tokenizer, 3)
    assert stats["weight_entropy_ratio"] == pytest.approx(1.0) and stats["weight_std"] == 0
    # the label-discrimination score: sums of target log-probs under each label's prompt
    prompts = trainer.prompts.weight.detach()
    sums, lengths = label_log_likelihoods(trainer.objective, prompts, sequences, trainer.pad_id, batch_size=4)
    alone = collate(sequences[4:5], 3, trainer.pad_id)
    one = score_targets(loaded.model, alone, prompts, torch.tensor([[1]])).logprob.sum()
    assert sums[4, 1].item() == pytest.approx(one.item(), rel=1e-5) and lengths[4] == len(sequences[4].target)
    same = prompts[[0, 0]]  # identical prompts: every label ties and argmax picks the first
    share_of_first = 100 * sum(s.label == 0 for s in sequences) / len(sequences)
    assert dev_metrics(trainer.objective, same, sequences, trainer.pad_id, 4)["dev_discrimination"] == share_of_first


def test_tune_generator_writes_a_complete_run(loaded, tmp_path):
    config = small_config(epochs=2, variant="fewgen", weight_floor=0.1)
    outcome = tune_generator(loaded, TASK, TRAIN, DEV, config=config, out_dir=tmp_path, show_progress=False)
    for name in (GENERATOR_DIR, METRICS_FILE, TRAINING_PLOT, RESULT_FILE):
        assert (tmp_path / name).exists()
    assert not (tmp_path / CHECKPOINT_DIR).exists()
    assert (tmp_path / TRAINING_PLOT).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["variant"] == "fewgen" and saved["weight_net_parameters"] == 1 * 100 + 100 + 100 + 1
    assert saved["compute"] == {"precision": "fp32", "device": "cpu", **machine_record()}  # pinned fp32
    steps = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    ratios = [r["weight_entropy_ratio"] for r in steps if r["kind"] == "step"]
    last = [r["weight_entropy_ratio"] for r in steps if r["kind"] == "step" and r["epoch"] == 2]
    assert len(ratios) == 4 and len(last) == 2 and min(ratios) >= 0.1 - 1e-6  # the floor bounds the ratio
    summary = saved["weight_entropy_ratio"]
    assert summary["all_steps"] == pytest.approx(sum(ratios) / 4)
    assert summary["last_epoch"] == pytest.approx(sum(last) / 2)
    kept = [r["train_weight_entropy_ratio"] for r in saved["history"] if r["epoch"] == saved["best_epoch"]]
    assert kept == [summary["kept_epoch"]]
    again = tune_generator(loaded, TASK, TRAIN, DEV, config=config, out_dir=tmp_path)
    assert again.result == saved and torch.equal(again.generator.prompts, outcome.generator.prompts)
    with pytest.raises(ValueError, match="other settings"):
        tune_generator(loaded, TASK, TRAIN, DEV, config=small_config(epochs=2, variant="fewgen"), out_dir=tmp_path)


def test_generator_must_be_a_causal_lm(tiny_model_dirs):
    with pytest.raises(ValueError, match="causal LM"):
        GeneratorTrainer(load_model(str(tiny_model_dirs[Family.MASKED])), TASK, small_config())


def test_cli_tune_generator(tiny_decoder_dir, tmp_path):
    runner = CliRunner()
    assert "--variant" in runner.invoke(app, ["tune-generator", "--help"]).output
    config = tmp_path / "gen.yaml"
    config.write_text(f"task: {demo_dir() / 'task.yaml'}\nmodel: {tiny_decoder_dir}\nvariant: plain\nepochs: 5\n")
    out = tmp_path / "run"
    args = ["tune-generator", "--config", str(config), "--data", str(demo_dir()), "--variant", "dawgen",
            "--epochs", "1", "--prompt-tokens", "2", "--out", str(out), "--precision", "fp32",
            "--set", "per_label_batch=4", "--set", "lambda_dist=0.5", "--weight-temperature", "1.5",
            "--weight-floor", "0.2", "--weight-min-entropy", "0.5", "--eos-weight", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / RESULT_FILE).read_text())
    weights = ("weight_temperature", "weight_floor", "weight_min_entropy", "eos_weight")
    assert [saved["config"][name] for name in weights] == [1.5, 0.2, 0.5, 2.0]
    assert set(saved["weight_entropy_ratio"]) == {"all_steps", "last_epoch", "kept_epoch"}
    assert saved["variant"] == "dawgen" and saved["steps"] == 4  # flags win over the file; 16 per label / 4
    assert saved["config"]["lambda_dist"] == 0.5 and saved["config"]["num_prompt_tokens"] == 2
    assert load_generator(out / GENERATOR_DIR).config.variant == "dawgen"
    bad = runner.invoke(app, ["tune-generator", "--config", str(config), "--data", str(demo_dir()), "--variant", "x"])
    assert bad.exit_code == 2 and "not one of" in " ".join(bad.output.split())
    missing = runner.invoke(app, ["tune-generator", "--task", "RTE"])
    assert missing.exit_code == 2 and "--data" in missing.output


@pytest.mark.parametrize("depth", ["input", "deep"])
def test_the_discriminative_term_makes_the_prompts_tell_the_labels_apart(loaded, depth):
    """With ``lambda_disc`` the label prompts learn to give each training pair's own label a higher
    posterior (GeDi: the Bayes posterior from the per-label likelihoods) than the LM loss alone does."""
    posterior = {}
    for weight in (0.0, 2.0):
        config = small_config(variant="plain", epochs=4, lambda_disc=weight, prompt_depth=depth)
        trainer = GeneratorTrainer(loaded, TASK, config)
        trainer.train(TRAIN, TRAIN)
        sequences = trainer.builder.encode_all(TRAIN)
        sums, _ = label_log_likelihoods(trainer.objective, trainer.prompts.weight.detach(), sequences, trainer.pad_id)
        gold = torch.tensor([s.label for s in sequences])
        posterior[weight] = torch.softmax(sums, 1).gather(1, gold[:, None]).mean().item()
    assert posterior[2.0] > max(posterior[0.0], 0.8), posterior
