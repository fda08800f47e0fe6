"""Small shared helpers."""

from dawgen.utils.io import append_jsonl, atomic_dir, atomic_write_json, atomic_write_text

__all__ = ["append_jsonl", "atomic_dir", "atomic_write_json", "atomic_write_text"]
