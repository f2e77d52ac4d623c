"""lmlib.lm.losses: the one masked next-token cross-entropy and per-token log-probabilities.

Worked values, equality with PyTorch's cross-entropy and with hand loops, one home (the GPT, the training
loop and the family-tree models call the same function), the all-ignored case, and clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmlib.lm import architectures, decoding, train
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.losses import logprobs_from_logits, masked_cross_entropy, token_logprobs

torch.set_num_threads(1)


def small_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=17, block_size=32, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


# ---------------------------------------------------------------------------- masked_cross_entropy


def test_masked_cross_entropy_worked_values():
    logits = torch.zeros(2, 3, 5)  # uniform over 5 tokens: log 5 whatever the targets
    y = torch.tensor([[0, 1, 2], [3, 4, 0]])
    assert masked_cross_entropy(logits, y).item() == pytest.approx(math.log(5))
    logits[0, 0, 0] = 100.0  # one confident right answer costs ~0
    assert masked_cross_entropy(logits, y).item() == pytest.approx(5 / 6 * math.log(5), abs=1e-6)
    y[0, 1:] = -1  # ignored: the mean is over the 4 remaining targets, one of which costs 0
    assert masked_cross_entropy(logits, y).item() == pytest.approx(3 / 4 * math.log(5), abs=1e-6)


def test_masked_cross_entropy_equals_pytorch_on_the_kept_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=g)
    y = torch.randint(0, 7, (3, 4), generator=g)
    y[0, :2] = -1
    y[2, 3] = -1
    keep = y != -1
    torch.testing.assert_close(masked_cross_entropy(logits, y), F.cross_entropy(logits[keep], y[keep]))
    # another ignore_index, e.g. the pad id
    z = y.clone()
    z[~keep] = 6
    torch.testing.assert_close(masked_cross_entropy(logits, z, ignore_index=6),
                               F.cross_entropy(logits[z != 6], z[z != 6]))


def test_all_ignored_gives_zero_and_a_zero_gradient_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((2, 3), -1))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_loss_is_float32_and_differentiable_for_bf16_logits():
    logits = torch.randn(2, 3, 5).to(torch.bfloat16).requires_grad_()
    loss = masked_cross_entropy(logits, torch.tensor([[0, 1, -1], [2, 3, 4]]))
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_one_home_gpt_train_and_architectures_use_it():
    assert train.cross_entropy_loss is masked_cross_entropy
    assert architectures.masked_cross_entropy is masked_cross_entropy
    m = small_gpt()
    x = torch.randint(0, 17, (2, 6))
    y = torch.randint(0, 17, (2, 6))
    y[:, :3] = -1  # the GPT, the loop's default loss and the family models ignore -1 alike
    logits, loss = m(x, y)
    torch.testing.assert_close(loss, masked_cross_entropy(logits, y))
    torch.testing.assert_close(loss, train.cross_entropy_loss(logits, y))


def test_masked_cross_entropy_errors_name_the_problem():
    logits = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\), got \(6, 5\)"):
        masked_cross_entropy(logits.reshape(6, 5), torch.zeros(6, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point"):
        masked_cross_entropy(torch.zeros(2, 3, 5, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must have shape \(B, T\) = \(2, 3\).*got \(2, 4\)"):
        masked_cross_entropy(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids, got dtype torch.float32"):
        masked_cross_entropy(logits, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"id 5 at \(1, 2\), outside \[0, V=5\) or ignore_index=-1"):
        masked_cross_entropy(logits, torch.tensor([[0, 1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match="id -2"):
        masked_cross_entropy(logits, torch.tensor([[0, 1, 2], [3, 4, -2]]))
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        masked_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), ignore_index=-1.0)


# ---------------------------------------------------------------------------- logprobs_from_logits


def test_logprobs_from_logits_against_a_hand_loop_and_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g)
    labels = torch.randint(0, 6, (2, 4), generator=g)
    got = logprobs_from_logits(logits, labels)
    assert got.shape == (2, 4) and got.dtype == torch.float32
    for b in range(2):
        for t in range(4):
            p = torch.exp(logits[b, t]) / torch.exp(logits[b, t]).sum()
            assert got[b, t].item() == pytest.approx(math.log(p[labels[b, t]].item()), abs=1e-5)
    ce = F.cross_entropy(logits.reshape(8, 6), labels.reshape(8), reduction="none").reshape(2, 4)
    torch.testing.assert_close(got, -ce)
    # worked value: uniform logits over 4 tokens -> log 1/4 everywhere
    assert torch.allclose(logprobs_from_logits(torch.zeros(1, 2, 4), torch.tensor([[0, 3]])), torch.full((1, 2), -math.log(4)))


def test_logprobs_from_logits_errors():
    with pytest.raises(ValueError, match=r"labels must have shape \(B, T\) = \(1, 2\)"):
        logprobs_from_logits(torch.zeros(1, 2, 4), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"id 4 at \(0, 1\), outside \[0, V=4\)"):
        logprobs_from_logits(torch.zeros(1, 2, 4), torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="id -1"):  # no ignore_index here: every label is scored
        logprobs_from_logits(torch.zeros(1, 2, 4), torch.tensor([[0, -1]]))
    with pytest.raises(TypeError, match="integer token ids"):
        logprobs_from_logits(torch.zeros(1, 2, 4), torch.zeros(1, 2))


# ---------------------------------------------------------------------------- token_logprobs


def test_token_logprobs_against_a_hand_loop():
    m = small_gpt(seed=2)
    ids = torch.randint(0, 17, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logprobs, mask = token_logprobs(m, ids)
    assert logprobs.shape == (3, 9) and mask.dtype == torch.bool
    assert torch.equal(logprobs[:, 0], torch.zeros(3)) and not mask[:, 0].any() and mask[:, 1:].all()
    for t in range(1, 9):
        with torch.no_grad():
            want = torch.log_softmax(m(ids[:, :t])[0][:, -1], -1).gather(1, ids[:, t:t + 1])[:, 0]
        torch.testing.assert_close(logprobs[:, t], want, atol=1e-5, rtol=1e-5)


def test_token_logprobs_equal_sequence_log_likelihood():
    m = small_gpt(seed=3)
    ids = torch.randint(0, 17, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logprobs, _ = token_logprobs(m, ids)
    mean = decoding.sequence_log_likelihood(m, ids, prompt_len=4)
    torch.testing.assert_close(mean, logprobs[:, 4:].mean(dim=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ["none", "learned", "sinusoidal", "alibi", "rope"])
def test_token_logprobs_with_left_padding_equal_the_unpadded_row(pos):
    m = small_gpt(seed=4, pos_encoding=pos)
    row = torch.randint(1, 17, (1, 7), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], dim=1)  # (1, 10), 3 pad tokens in front
    mask = torch.tensor([[False] * 3 + [True] * 7])
    with torch.no_grad():
        alone, _ = token_logprobs(m, row)
        lp, out_mask = token_logprobs(m, padded, mask)
    assert torch.equal(out_mask, torch.tensor([[False] * 4 + [True] * 6]))  # padding and the first real token
    assert torch.equal(lp[:, :4], torch.zeros(1, 4))
    torch.testing.assert_close(lp[:, 4:], alone[:, 1:], atol=1e-5, rtol=1e-5)


def test_token_logprobs_carry_a_gradient():
    m = small_gpt(seed=5).train()
    logprobs, mask = token_logprobs(m, torch.randint(0, 17, (2, 5)))
    (-(logprobs * mask).sum()).backward()
    assert m.lm_head.weight.grad is not None and m.lm_head.weight.grad.abs().sum() > 0


def test_token_logprobs_errors_name_the_problem():
    m = small_gpt()
    with pytest.raises(ValueError, match=r"T >= 2 tokens"):
        token_logprobs(m, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\) tensor"):
        token_logprobs(m, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        token_logprobs(m, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"outside the model's vocabulary \[0, V=17\)"):
        token_logprobs(m, torch.tensor([[1, 2, 17]]))  # only the last token: the model never sees it
    with pytest.raises(ValueError, match="negative id -1"):
        token_logprobs(m, torch.tensor([[-1, 2, 3]]))
    with pytest.raises(ValueError, match=r"mask has shape \(1, 2\)"):
        token_logprobs(m, torch.tensor([[1, 2, 3]]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must return logits \(B, T - 1, V\)"):
        token_logprobs(lambda x: x.float(), torch.tensor([[1, 2, 3]]))
