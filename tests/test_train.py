"""lmlib.lm.train: schedule, batches, a loss that falls, exact resume, crash safety, clear errors."""
import math
import os
import signal

import pytest
import torch
from torch import nn

from lmlib.checkpoint import load_checkpoint
from lmlib.lm.train import (
    TrainConfig,
    configure_optimizer,
    cross_entropy_loss,
    estimate_loss,
    get_batch,
    lr_at,
    make_batch_fn,
    train,
)

torch.set_num_threads(1)

V = 7
# A repetitive token stream: after token i comes token (i + 1) % V, so a bigram model can reach ~0 loss.
TOKENS = torch.arange(600) % V
DATA = {"train": TOKENS[:500], "val": TOKENS[500:]}


def small_cfg(**kw) -> TrainConfig:
    base = dict(max_steps=40, batch_size=8, block_size=6, lr=0.05, min_lr=0.005, warmup_steps=2,
                eval_interval=10, eval_iters=2, log_interval=5, device="cpu", progress=False)
    return TrainConfig(**{**base, **kw})


class Bigram(nn.Module):
    """logits for the next token = a row of a (V, V) table."""

    def __init__(self, V=V):
        super().__init__()
        self.table = nn.Embedding(V, V)

    def forward(self, idx):  # (B, T) -> (B, T, V)
        return self.table(idx)


class DropoutLM(nn.Module):
    """Small but with everything that can break a resume: dropout (global RNG), biases, a norm."""

    def __init__(self, V=V, C=16):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.drop = nn.Dropout(0.2)
        self.ln = nn.LayerNorm(C)
        self.head = nn.Linear(C, V)

    def forward(self, idx):  # (B, T) -> (B, T, V)
        return self.head(self.ln(self.drop(self.wte(idx))))


def fresh(cls, seed):
    torch.manual_seed(seed)
    return cls()


# ---------------------------------------------------------------- learning-rate schedule


def test_lr_schedule_worked_values():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # warmup: lr * (step + 1) / W
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)  # the peak at the last warmup step
    assert lr_at(10, cfg) == pytest.approx(1.0)  # cosine starts at lr
    assert lr_at(60, cfg) == pytest.approx((1.0 + 0.1) / 2)  # halfway: the mean of lr and min_lr
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(10_000, cfg) == pytest.approx(0.1)
    after = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:])), "cosine decay is monotone"

    assert lr_at(0, TrainConfig(lr=0.3, warmup_steps=0, max_steps=10, min_lr=0.0)) == pytest.approx(0.3)
    assert lr_at(50, TrainConfig(lr=0.3, min_lr=0.0, warmup_steps=0, max_steps=1000, lr_decay_steps=100)) == pytest.approx(0.15)
    const = TrainConfig(lr=0.3, min_lr=0.0, warmup_steps=3, max_steps=10, schedule="constant")
    assert [lr_at(s, const) for s in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="step must be >= 0"):
        lr_at(-1, cfg)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(min_lr=2.0, lr=1.0), "min_lr <= lr"),
        (dict(schedule="linear"), "'cosine' or 'constant'"),
        (dict(max_steps=0), "max_steps must be a positive int"),
        (dict(warmup_steps=100, max_steps=50), "before warmup ends at warmup_steps=100"),
        (dict(grad_clip=-1.0), "grad_clip must be >= 0"),
    ],
)
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


# ---------------------------------------------------------------- batches and loss


def test_get_batch_shapes_and_shift():
    data = torch.arange(100, dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, block_size=8, batch_size=5, generator=g)
    assert x.shape == y.shape == (5, 8) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1), "y[b, t] is the token after x[b, t]"
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(5, 7, dtype=torch.int64)), "each row is a contiguous window"
    assert int(x.min()) >= 0 and int(y.max()) <= 99
    x2, _ = get_batch(data, 8, 5, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2), "same seed, same batch"
    # the shortest possible data: exactly one window
    x, y = get_batch(torch.arange(9), 8, 3, torch.Generator().manual_seed(1))
    assert torch.equal(x, torch.arange(8).expand(3, 8)) and torch.equal(y, torch.arange(1, 9).expand(3, 8))


def test_get_batch_clear_errors():
    with pytest.raises(ValueError, match="has 8 tokens, but block_size=8 needs at least 9"):
        get_batch(torch.arange(8), 8, 2)
    with pytest.raises(TypeError, match="integer token ids, got dtype torch.float32"):
        get_batch(torch.rand(50), 8, 2)
    with pytest.raises(ValueError, match=r"1-D \(N,\) token ids, got shape \(5, 10\)"):
        get_batch(torch.zeros(5, 10, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError, match=r"data\['val'\] has 3 tokens"):
        make_batch_fn({"train": TOKENS, "val": TOKENS[:3]}, 6, 2)
    with pytest.raises(KeyError, match="no 'val' split in the data; have \\['train'\\]"):
        make_batch_fn(TOKENS, 6, 2)("val", torch.Generator())


def test_cross_entropy_worked_value_and_errors():
    logits = torch.zeros(2, 3, 5)  # uniform over 5 tokens -> loss log 5
    y = torch.tensor([[0, 1, 2], [3, 4, 0]])
    assert cross_entropy_loss(logits, y).item() == pytest.approx(math.log(5))
    logits[0, 0, 0] = 100.0  # a confident right answer costs ~0
    assert cross_entropy_loss(logits, y).item() == pytest.approx(5 / 6 * math.log(5), abs=1e-6)
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\), got \(6, 5\)"):
        cross_entropy_loss(logits.reshape(6, 5), y)
    with pytest.raises(ValueError, match=r"targets must have shape \(B, T\) = \(2, 3\).*got \(2, 4\)"):
        cross_entropy_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids, got dtype torch.float32"):
        cross_entropy_loss(logits, y.float())


def test_the_default_loss_ignores_minus_one_targets():
    # the loop's loss is lmlib.lm.losses.masked_cross_entropy: -1 (padding, a prompt) carries no loss
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 0] = 100.0
    y = torch.tensor([[0, -1, -1], [3, 4, -1]])
    assert cross_entropy_loss(logits, y).item() == pytest.approx(2 / 3 * math.log(5), abs=1e-6)


def test_a_model_returning_logits_and_loss_trains_like_one_returning_logits():
    """nanoGPT-style models return (logits, loss); the loop must use the logits and nothing else."""

    class ReturnsTuple(Bigram):
        def forward(self, idx):
            return super().forward(idx), torch.tensor(123.0)

    torch.manual_seed(0)
    plain = Bigram()
    pair = ReturnsTuple()
    pair.load_state_dict(plain.state_dict())
    h1 = train(plain, DATA, small_cfg(max_steps=5, eval_interval=0))
    h2 = train(pair, DATA, small_cfg(max_steps=5, eval_interval=0))
    assert h1["loss"] == h2["loss"]
    torch.testing.assert_close(plain.table.weight, pair.table.weight, rtol=0, atol=0)


def test_train_clear_errors(tmp_path):
    class ReturnsDict(Bigram):
        def forward(self, idx):
            return {"logits": super().forward(idx)}

    with pytest.raises(TypeError, match=r"must return a logits tensor \(B, T, V\) or a tuple that starts with one, got dict"):
        train(ReturnsDict(), DATA, small_cfg(max_steps=2))

    class Flat(Bigram):
        def forward(self, idx):
            return super().forward(idx).flatten(0, 1)  # (B*T, V)

    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\), got \(48, 7\)"):
        train(Flat(), DATA, small_cfg(max_steps=2))
    with pytest.raises(ValueError, match="block_size=6 needs at least 7"):
        train(Bigram(), TOKENS[:5], small_cfg())
    with pytest.raises(TypeError, match="integer token ids"):
        train(Bigram(), TOKENS.float(), small_cfg())
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(Bigram(), DATA, small_cfg(), loss_fn=lambda logits, y: logits.sum() * float("nan"))


# ---------------------------------------------------------------- learning


def test_bigram_loss_falls_and_parameters_change():
    model = fresh(Bigram, 0)
    before = model.table.weight.detach().clone()
    cfg = small_cfg(max_steps=60, lr=0.3, min_lr=0.03, eval_interval=20)
    h = train(model, DATA, cfg)
    assert h["eval_step"] == [0, 20, 40, 60]
    assert h["step"] == list(range(5, 61, 5)) and len(h["loss"]) == len(h["lr"]) == len(h["time"]) == 12
    assert h["val_loss"][0] > 0.8 * math.log(V), "starts near chance (log V)"
    assert h["val_loss"][-1] < 0.25 * h["val_loss"][0], h["val_loss"]
    assert h["loss"][-1] < 0.25 * h["loss"][0]
    assert all(t > 0 for t in h["tokens_per_s"]) and h["time"] == sorted(h["time"])
    assert not torch.allclose(model.table.weight, before)
    assert model.training


def test_estimate_loss_is_deterministic_and_restores_mode():
    model = fresh(DropoutLM, 0)
    batches = make_batch_fn(DATA, 6, 4)
    model.train()
    a = estimate_loss(model, batches, eval_iters=3)
    assert model.training, "train mode restored"
    model.eval()
    b = estimate_loss(model, batches, eval_iters=3)
    assert not model.training, "eval mode restored"
    assert a == b and set(a) == {"train", "val"}, "eval mode (no dropout) + a fixed generator: same numbers"
    assert all(p.grad is None for p in model.parameters()), "no gradients"
    # equals the loss computed by hand on the same batches
    g = torch.Generator().manual_seed(0)
    want = sum(cross_entropy_loss(model(x), y).item() for x, y in (batches("val", g) for _ in range(3))) / 3
    assert a["val"] == pytest.approx(want)


def test_optimizer_groups_decay_only_matrices():
    model = DropoutLM()
    opt = configure_optimizer(model, small_cfg(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model.wte.weight, model.head.weight])
    assert ids(no_decay["params"]) == ids([model.ln.weight, model.ln.bias, model.head.bias])
    opt = configure_optimizer(model, small_cfg(decay_embeddings=False))
    assert ids(opt.param_groups[0]["params"]) == ids([model.head.weight])
    assert opt.defaults["betas"] == (0.9, 0.95)


# ---------------------------------------------------------------- checkpoints and exact resume


def _history_without_clock(h):
    return {k: v for k, v in h.items() if k not in ("time", "tokens_per_s")}


@pytest.fixture(scope="module")
def straight_run():
    """Reference: 40 steps without interruption (and without checkpoints)."""
    model = fresh(DropoutLM, 0)
    h = train(model, DATA, small_cfg())
    return model.state_dict(), h


def _stop_at(n, exc=KeyboardInterrupt):
    def callback(step, info):
        if step == n:
            raise exc("stopped by the test")
    return callback


def test_resume_after_interrupt_is_exact(tmp_path, straight_run):
    ref_state, ref_h = straight_run
    path = tmp_path / "ckpt.safetensors"
    cfg = small_cfg(ckpt_path=path)  # a Path works too
    with pytest.raises(KeyboardInterrupt):
        train(fresh(DropoutLM, 0), DATA, cfg, callback=_stop_at(17))
    assert load_checkpoint(path).meta["step"] == 17, "saved at the step it stopped"

    # a new process would build a new model (other init) and a new config object
    model = fresh(DropoutLM, 123)
    h = train(model, DATA, small_cfg(ckpt_path=str(path)))
    torch.testing.assert_close(model.state_dict(), ref_state, rtol=0, atol=0)
    assert _history_without_clock(h) == _history_without_clock(ref_h)
    assert load_checkpoint(path).meta["step"] == 40

    # resuming a finished run changes nothing
    h2 = train(model, DATA, small_cfg(ckpt_path=str(path)))
    assert _history_without_clock(h2) == _history_without_clock(ref_h)


def test_crash_keeps_last_interval_checkpoint_and_resume_is_exact(tmp_path, straight_run):
    ref_state, ref_h = straight_run
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(RuntimeError, match="stopped by the test"):
        train(fresh(DropoutLM, 0), DATA, small_cfg(ckpt_path=str(path), ckpt_interval=10),
              callback=_stop_at(23, RuntimeError))
    assert load_checkpoint(path).meta["step"] == 20, "a crash does not save; the step-20 checkpoint stays"
    model = fresh(DropoutLM, 7)
    h = train(model, DATA, small_cfg(ckpt_path=str(path), ckpt_interval=10))
    torch.testing.assert_close(model.state_dict(), ref_state, rtol=0, atol=0)
    assert _history_without_clock(h) == _history_without_clock(ref_h)


class InterruptedLM(DropoutLM):
    """Sends itself Ctrl-C (SIGINT) ``times`` times from inside its n-th forward pass in the given mode."""

    def __init__(self, at=12, training=True, times=1):
        super().__init__()
        self.at, self.when_training, self.times, self.calls = at, training, times, 0

    def forward(self, idx):
        if self.training == self.when_training:
            self.calls += 1
            if self.calls == self.at:
                for _ in range(self.times):
                    os.kill(os.getpid(), signal.SIGINT)
        return super().forward(idx)


@pytest.mark.parametrize("during, saved_at", [("train", 12), ("eval", 20)])
def test_ctrl_c_finishes_the_step_then_saves(tmp_path, straight_run, during, saved_at):
    """A real SIGINT inside a forward pass: the step (or evaluation) completes, is saved, then we stop."""
    ref_state, ref_h = straight_run
    path = tmp_path / "ckpt.safetensors"
    # eval: 2 splits x 2 eval_iters = 4 forwards per evaluation; the 9th is in the evaluation at step 20
    at = 12 if during == "train" else 9
    torch.manual_seed(0)
    model = InterruptedLM(at=at, training=during == "train")
    with pytest.raises(KeyboardInterrupt):
        train(model, DATA, small_cfg(ckpt_path=str(path)))
    ck = load_checkpoint(path)
    assert ck.meta["step"] == saved_at
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler restored"
    model = fresh(DropoutLM, 1)
    h = train(model, DATA, small_cfg(ckpt_path=str(path)))
    torch.testing.assert_close(model.state_dict(), ref_state, rtol=0, atol=0)
    assert _history_without_clock(h) == _history_without_clock(ref_h), "no evaluation lost or repeated"


def test_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="stopped in the middle of step 12"), pytest.raises(KeyboardInterrupt):
        train(InterruptedLM(at=12, times=2), DATA, small_cfg(ckpt_path=str(path), ckpt_interval=10))
    assert load_checkpoint(path).meta["step"] == 10, "the half-done step 12 is not saved"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the 2nd save's data file (the 1st save has no old sidecar to extend)
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space left"):
        train(fresh(Bigram, 0), DATA, small_cfg(ckpt_path=str(path), ckpt_interval=10))
    monkeypatch.undo()
    assert load_checkpoint(path).meta["step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors", "ckpt.safetensors.sha256"]


def test_callback_can_stop_and_resume_refuses_a_changed_config(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    h = train(fresh(Bigram, 0), DATA, small_cfg(ckpt_path=str(path)), callback=lambda step, info: step == 8)
    assert h["step"] == [5] and load_checkpoint(path).meta["step"] == 8
    with pytest.raises(ValueError, match=r"cannot resume.*\n  lr: checkpoint 0.05 vs now 0.1"):
        train(Bigram(), DATA, small_cfg(ckpt_path=str(path), lr=0.1))
    with pytest.raises(ValueError, match="set lr_decay_steps=40 explicitly"):
        train(Bigram(), DATA, small_cfg(ckpt_path=str(path), max_steps=80))
    h = train(Bigram(), DATA, small_cfg(ckpt_path=str(path), max_steps=80, lr_decay_steps=40))
    assert h["step"][-1] == 80 and h["lr"][-1] == pytest.approx(0.005)
    h = train(Bigram(), DATA, small_cfg(ckpt_path=str(path), resume=False, max_steps=3))
    assert h["step"] == [3] and load_checkpoint(path).meta["step"] == 3, "resume=False starts over"


def test_batch_fn_and_progress_bar(capsys):
    calls = []

    def batches(split, generator):
        calls.append(split)
        return get_batch(TOKENS, 5, 4, generator)

    h = train(fresh(Bigram, 0), batches, small_cfg(max_steps=6, eval_interval=3, progress=True), splits=("val",))
    assert h["eval_step"] == [0, 3, 6] and len(h["val_loss"]) == 3 and "train_loss" not in h
    assert calls.count("train") == 6 and calls.count("val") == 3 * 2
    assert "6/6" in capsys.readouterr().err
