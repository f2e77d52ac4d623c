"""lmlib.checkpoint: safetensors round trips, checksums, atomic writes, tied weights, clear errors."""
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from lmlib import _io
from lmlib.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_into,
    save_checkpoint,
    sidecar_path,
)

torch.set_num_threads(1)


class TinyGPT(nn.Module):
    """Just the parts that matter here: a token embedding tied to the output head (GPT-2 style)."""

    def __init__(self, V=11, C=6, tie=True):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        if tie:
            self.lm_head.weight = self.wte.weight  # one Parameter, two names

    def forward(self, idx):  # (B, T) -> (B, T, V)
        return self.lm_head(self.ln_f(self.wte(idx)))


def _adamw_after_steps(model, n=2):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(n):
        opt.zero_grad()
        model(torch.tensor([[1, 2, 3]])).logsumexp(-1).sum().backward()
        opt.step()
    return opt


def test_round_trip_model_optimizer_meta(tmp_path):
    torch.manual_seed(0)
    model = TinyGPT(tie=False)
    opt = _adamw_after_steps(model)
    meta = {
        "step": 7, "lr": 3e-4, "name": "bigram", "betas": (0.9, 0.95), "none": None, "flag": True,
        "history": {"loss": [2.5, float("inf")]}, "by_int": {0: "a", 5: [1, 2]}, "__reserved": 1,
        "rng": torch.Generator().manual_seed(3).get_state(),
        "mixed": [torch.arange(4, dtype=torch.int64), torch.ones(2, dtype=torch.bfloat16), torch.tensor(1.5)],
    }
    path = tmp_path / "run" / "ckpt.safetensors"  # the folder is created
    digest = save_checkpoint(path, model.state_dict(), optimizer_state=opt.state_dict(), meta=meta)

    assert sidecar_path(path).read_text() == f"{digest}  ckpt.safetensors\n"  # `sha256sum -c` format
    assert digest == _io.sha256_file(path)
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint) and ck.sha256 == digest and ck.path == path
    assert list(ck.model) == list(model.state_dict())
    torch.testing.assert_close(ck.model, model.state_dict(), rtol=0, atol=0)
    for k in ("step", "lr", "name", "betas", "none", "flag", "history", "by_int", "__reserved"):
        assert ck.meta[k] == meta[k], k
    assert type(ck.meta["betas"]) is tuple
    assert torch.equal(ck.meta["rng"], meta["rng"])
    for got, want in zip(ck.meta["mixed"], meta["mixed"]):
        assert got.dtype == want.dtype and torch.equal(got, want)

    # the optimizer state is usable: continuing from the loaded state == continuing the original
    model2 = TinyGPT(tie=False)
    load_into(model2, ck)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(ck.optimizer)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(torch.tensor([[4, 5]])).logsumexp(-1).sum().backward()
        o.step()
    torch.testing.assert_close(model2.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_no_pickle_in_the_file(tmp_path):
    """The file is plain safetensors: a header of JSON and raw tensor bytes."""
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, optimizer_state={"state": {0: {"step": torch.tensor(1.0)}}})
    raw = path.read_bytes()
    assert b"\x80\x04" not in raw[:16] and raw[8:9] == b"{"  # pickle protocol marker absent, JSON header
    with safe_open(path, "pt") as f:
        assert sorted(f.keys()) == ["optimizer/0", "w"]


def test_unsupported_meta_type_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"meta\['cfg'\]\['opts'\] of type set"):
        save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1)}, meta={"cfg": {"opts": {1, 2}}})
    with pytest.raises(TypeError, match="model_state\\['w'\\] is a list"):
        save_checkpoint(tmp_path / "c.safetensors", {"w": [1.0]})
    assert not (tmp_path / "c.safetensors").exists()


json_leaf = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=5)
nested = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=3)
    | st.tuples(kids, kids)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 9), kids, max_size=3),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None)
@given(nested)
def test_meta_round_trips_any_nesting(obj):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.safetensors"
        save_checkpoint(path, {}, meta={"x": obj})
        assert load_checkpoint(path).meta == {"x": obj}


# ---------------------------------------------------------------- tied and shared weights


def test_tied_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TinyGPT(tie=True)
    state = model.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["wte.weight"].data_ptr()
    with pytest.raises(RuntimeError, match="share memory"):  # the problem we solve
        save_file(state, tmp_path / "plain.safetensors")

    path = tmp_path / "gpt.safetensors"
    save_checkpoint(path, state, optimizer_state=_adamw_after_steps(model).state_dict())
    with safe_open(path, "pt") as f:
        assert "lm_head.weight" not in f.keys() and "wte.weight" in f.keys()  # stored once
    ck = load_checkpoint(path)
    assert list(ck.model) == list(state)
    assert ck.model["lm_head.weight"] is ck.model["wte.weight"]

    fresh = TinyGPT(tie=True)
    load_into(fresh, ck)
    assert fresh.lm_head.weight is fresh.wte.weight, "loading keeps the model's tie"
    torch.testing.assert_close(fresh.wte.weight, model.wte.weight, rtol=0, atol=0)
    x = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(fresh(x), model(x))


def test_overlapping_views_are_stored_as_copies(tmp_path):
    buf = torch.arange(12.0)
    state = {"a": buf[:6], "b": buf[6:], "t": buf.view(3, 4).t(), "whole": buf}
    path = tmp_path / "v.safetensors"
    save_checkpoint(path, state)
    ck = load_checkpoint(path)
    for k, v in state.items():
        torch.testing.assert_close(ck.model[k], v, rtol=0, atol=0)


# ---------------------------------------------------------------- clear errors


def test_missing_file_says_how_to_recreate(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors does not exist.*save_checkpoint"):
        load_checkpoint(path)
    save_checkpoint(path, {"w": torch.ones(1)})
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors\.sha256 is missing"):
        load_checkpoint(path)


def test_checksum_mismatch_names_both_digests(tmp_path):
    path = tmp_path / "c.safetensors"
    good = save_checkpoint(path, {"w": torch.zeros(100)})
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # one flipped bit in the tensor data: still parses, wrong numbers
    path.write_bytes(bytes(raw))
    bad = _io.sha256_file(path)
    with pytest.raises(CheckpointError, match="checksum mismatch") as e:
        load_checkpoint(path)
    assert good in str(e.value) and bad in str(e.value)

    save_checkpoint(path, {"w": torch.zeros(100)})
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match=f"expected sha256 {wrong}, got {good}"):
        load_checkpoint(path, expected_sha256=wrong)
    assert load_checkpoint(path, expected_sha256=good.upper()).sha256 == good


def test_truncated_file_gives_clear_errors(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.randn(64, 64)}, meta={"step": 3})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"checksum mismatch.*bytes\).*truncated"):
        load_checkpoint(path)
    # even with a matching checksum (e.g. written by hand), a torn file is reported, not half-loaded
    _io.atomic_write_text(sidecar_path(path), _io.sha256_file(path) + "  c.safetensors\n")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)
    path.write_bytes(b"\x01")
    _io.atomic_write_text(sidecar_path(path), _io.sha256_file(path) + "  c.safetensors\n")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_plain_safetensors_with_known_digest(tmp_path):
    """Weights written by someone else: no sidecar, no lmlib header; the printed digest is the check."""
    path = tmp_path / "w.safetensors"
    save_file({"wte.weight": torch.ones(3, 2)}, path)
    ck = load_checkpoint(path, expected_sha256=_io.sha256_file(path))
    assert list(ck.model) == ["wte.weight"] and ck.optimizer is None and ck.meta == {}


# ---------------------------------------------------------------- crashes while writing


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_crash_during_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, crash_at):
    """save_checkpoint does three os.replace calls; killing it before any of them keeps a valid state."""
    path = tmp_path / "c.safetensors"
    old = save_checkpoint(path, {"w": torch.zeros(3)}, meta={"step": 1})
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": torch.ones(3)}, meta={"step": 2})
    monkeypatch.undo()
    assert len(calls) == crash_at
    ck = load_checkpoint(path)  # never a checksum error, never a torn file
    expect = 1 if crash_at < 3 else 2  # the data file is replaced by the 2nd call
    assert ck.meta["step"] == expect
    assert torch.equal(ck.model["w"], torch.full((3,), float(expect - 1)))
    assert (ck.sha256 == old) == (expect == 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "c.safetensors.sha256"]
    # and the next save works normally, leaving a one-line sidecar
    new = save_checkpoint(path, {"w": torch.ones(3)}, meta={"step": 2})
    assert sidecar_path(path).read_text() == f"{new}  c.safetensors\n"


def test_crash_in_the_middle_of_writing_bytes(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.zeros(3)}, meta={"step": 1})

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"w": torch.ones(3)}, meta={"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path).meta["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "c.safetensors.sha256"]


# ---------------------------------------------------------------- load_into


def test_load_into_names_every_key_that_does_not_fit(tmp_path):
    path = tmp_path / "c.safetensors"
    small = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    save_checkpoint(path, small.state_dict())
    ck = load_checkpoint(path)

    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.LayerNorm(5))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_into(other, ck)
    msg = str(e.value)
    assert "missing (in the model, not in the checkpoint): 3.weight, 3.bias" in msg
    assert "shape mismatch for 2.weight: checkpoint [3, 8] vs model [5, 8]" in msg
    assert "shape mismatch for 2.bias: checkpoint [3] vs model [5]" in msg
    torch.testing.assert_close(other.state_dict(), before)  # strict: nothing loaded

    report = load_into(other, ck, strict=False)
    assert report.missing == ["3.weight", "3.bias"] and report.unexpected == []
    assert [k for k, _, _ in report.mismatched] == ["2.weight", "2.bias"] and not report.ok
    torch.testing.assert_close(other[0].weight, small[0].weight)  # what fits is loaded
    torch.testing.assert_close(other[2].weight, before["2.weight"])

    tiny = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(CheckpointError, match=r"unexpected \(in the checkpoint, not in the model\): 2\.weight, 2\.bias"):
        load_into(tiny, ck)
    assert load_into(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), ck).ok
