"""The book GPT that ships with lmlib: loads in one line, checksums verified, actually trained."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmlib.checkpoint import CheckpointError
from lmlib.text.corpus import shakespeare
from lmlib.assets import BOOK_GPT, MANIFEST, book_gpt_info, load_book_gpt, manifest_sha256

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def book_gpt():
    return load_book_gpt()


def test_ships_with_manifest_checksum():
    assert BOOK_GPT.exists() and MANIFEST.exists()
    from lmlib._io import sha256_file
    assert sha256_file(BOOK_GPT) == manifest_sha256(BOOK_GPT.name)
    entry = json.loads(MANIFEST.read_text())[BOOK_GPT.name]
    assert entry["bytes"] == BOOK_GPT.stat().st_size


def test_loads_in_one_line(book_gpt):
    model, tok = book_gpt
    assert not model.training
    assert tok.vocab_size == model.config.vocab_size
    text = "ROMEO:\nBut soft, what light"
    assert tok.decode(tok.encode(text)) == text
    assert "<|endoftext|>" in tok.special_tokens


def test_is_trained_not_a_placeholder(book_gpt):
    """The shipped model predicts held-out Shakespeare far better than the 4.36 nats of a uniform guess."""
    model, tok = book_gpt
    info = book_gpt_info()
    assert not info.get("placeholder", False), "lmlib/assets holds the placeholder, not the recipe's model"
    val = shakespeare("all").val
    ids = torch.tensor(tok.encode(val))
    starts = torch.linspace(0, len(ids) - 130, 64).long()  # 64 windows spread over the whole validation text
    x = torch.stack([ids[s:s + 128] for s in starts])
    y = torch.stack([ids[s + 1:s + 129] for s in starts])
    with torch.inference_mode():
        _, loss = model(x, y)
    assert loss.item() < 1.75, loss.item()
    # the metadata's reported validation loss agrees with a fresh measurement (different windows)
    assert abs(info["final_loss"]["val"] - loss.item()) < 0.15
    assert info["train_seconds"] > 0 and info["train_config"]["max_steps"] == len(info["history"]["step"]) * info["train_config"]["log_interval"]


def test_seeded_sample_is_reproducible(book_gpt):
    model, tok = book_gpt
    prompt = torch.tensor([tok.encode("KING:\n")])
    a = model.generate(prompt, 60, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 60, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_tampered_checkpoint_is_refused(tmp_path, monkeypatch):
    import lmlib.assets as pre
    fake = tmp_path / "assets"
    fake.mkdir()
    shutil.copy(BOOK_GPT, fake / BOOK_GPT.name)
    shutil.copy(MANIFEST, fake / MANIFEST.name)
    # rewrite the file AND its sidecar consistently: only the manifest can catch this
    data = bytearray((fake / BOOK_GPT.name).read_bytes())
    data[-1] ^= 0xFF
    (fake / BOOK_GPT.name).write_bytes(bytes(data))
    from lmlib._io import sha256_file
    (fake / (BOOK_GPT.name + ".sha256")).write_text(f"{sha256_file(fake / BOOK_GPT.name)}  {BOOK_GPT.name}\n")
    monkeypatch.setattr(pre, "BOOK_GPT", fake / BOOK_GPT.name)
    monkeypatch.setattr(pre, "MANIFEST", fake / MANIFEST.name)
    with pytest.raises(CheckpointError):
        pre.load_book_gpt()


def test_missing_files_name_the_fix(tmp_path, monkeypatch):
    import lmlib.assets as pre
    monkeypatch.setattr(pre, "BOOK_GPT", tmp_path / "book_gpt.safetensors")
    with pytest.raises(FileNotFoundError, match="recipes/book_gpt.py"):
        pre.load_book_gpt()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_book_gpt(tmp_path / "nope.safetensors")


def test_recipe_smoke(tmp_path):
    """The recipe runs end to end (a few steps) and writes a checkpoint that load_book_gpt reads."""
    out = tmp_path / "gpt.safetensors"
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "book_gpt.py"), "--steps", "4", "--eval-batches", "2",
                        "--out", str(out), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    model, tok = load_book_gpt(out)
    info = book_gpt_info(out)
    assert info["train_config"]["max_steps"] == 4 and len(info["sample"]) > 100
    assert model.config.n_layer == 4 and tok.vocab_size == 78
