"""Batched generation for Part III: the GPT's padding mask and hidden states, and decoding.generate_batch.

Equivalences (a padded prompt is continued exactly as the prompt alone, for every positional encoding;
the returned log-probabilities equal token_logprobs recomputed on the output), end tokens, the
block size, one sampler, and clear errors."""
import pytest
import torch

from lmlib.lm import decoding
from lmlib.lm.decoding import Generation, generate_batch
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.losses import token_logprobs

torch.set_num_threads(1)

ENCODINGS = ["none", "learned", "sinusoidal", "alibi", "rope"]
V = 17


def small_gpt(pos: str = "learned", seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32, pos_encoding=pos)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


PROMPTS = [[3, 1, 4, 1, 5, 9, 2], [6, 5], [3, 5, 8, 9]]


# ---------------------------------------------------------------------------- the GPT's hidden states and mask


@pytest.mark.parametrize("pos", ENCODINGS)
def test_lm_head_of_hidden_states_is_the_logits(pos):
    m = small_gpt(pos)
    x = torch.randint(0, V, (2, 9))
    h = m.hidden_states(x)
    assert h.shape == (2, 9, 32)
    torch.testing.assert_close(m.lm_head(h), m(x)[0])


@pytest.mark.parametrize("impl", ["fused", "manual"])
@pytest.mark.parametrize("pos", ENCODINGS)
def test_left_padding_does_not_change_the_real_positions(pos, impl):
    m = small_gpt(pos, attn_impl=impl)
    row = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([torch.full((1, 4), 7), row], dim=1)  # 4 pad tokens (id 7) in front
    mask = torch.tensor([[False] * 4 + [True] * 6])
    with torch.no_grad():
        alone = m(row)[0]
        got, _ = m(padded, attention_mask=mask)
        h = m.hidden_states(padded, attention_mask=mask.long())  # 0/1 masks are accepted
    torch.testing.assert_close(got[:, 4:], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(got).all() and torch.isfinite(h).all()  # padding queries give no NaN
    # a mask with no padding changes nothing
    torch.testing.assert_close(m(row, attention_mask=torch.ones(1, 6, dtype=torch.bool))[0], alone, atol=1e-6, rtol=1e-5)


def test_attention_mask_errors():
    m = small_gpt()
    x = torch.randint(0, V, (2, 4))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\)"):
        m(x, attention_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="attention_mask must hold only 0 and 1"):
        m(x, attention_mask=torch.full((2, 4), 2))
    with pytest.raises(ValueError, match="row 1 is all False"):
        m(x, attention_mask=torch.tensor([[True] * 4, [False] * 4]))


# ---------------------------------------------------------------------------- generate_batch


@pytest.mark.parametrize("pos", ENCODINGS)
def test_batched_greedy_equals_each_prompt_alone(pos):
    m = small_gpt(pos, seed=1)
    gen = generate_batch(m, PROMPTS, 6, greedy=True)
    assert isinstance(gen, Generation)
    P = max(map(len, PROMPTS))
    assert gen.tokens.shape == (3, P + 6) and gen.response.shape == (3, 6) and gen.prompt_mask.shape == (3, P)
    for b, p in enumerate(PROMPTS):
        alone = generate_batch(m, [p], 6, greedy=True)
        assert torch.equal(gen.response[b], alone.response[0]), (pos, b)
        assert gen.tokens[b, P - len(p):P].tolist() == p and gen.prompt_mask[b].sum() == len(p)
        # the same tokens as GPT.generate (temperature 0) and decoding.greedy
        assert torch.equal(m.generate(torch.tensor([p]), 6, temperature=0)[0, len(p):], alone.response[0])
        assert torch.equal(decoding.greedy(m, torch.tensor([p]), 6, max_context=32)[0, len(p):], alone.response[0])
        torch.testing.assert_close(gen.logprobs[b], alone.logprobs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ENCODINGS)
def test_logprobs_equal_token_logprobs_recomputed_on_the_output(pos):
    m = small_gpt(pos, seed=2)
    gen = generate_batch(m, PROMPTS, 8, generator=torch.Generator().manual_seed(0))
    P = gen.prompt_mask.shape[1]
    with torch.no_grad():
        lp, mask = token_logprobs(m, gen.tokens, gen.attention_mask)
    assert torch.equal(mask[:, P:], gen.response_mask)
    torch.testing.assert_close(lp[:, P:], gen.logprobs, atol=1e-5, rtol=1e-5)
    assert (gen.logprobs <= 0).all()


def test_logprobs_are_the_policy_not_the_filtered_sampler():
    m = small_gpt(seed=3)
    gen = generate_batch(m, PROMPTS, 5, temperature=0.5, top_k=3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lp, _ = token_logprobs(m, gen.tokens, gen.attention_mask)
    P = gen.prompt_mask.shape[1]
    torch.testing.assert_close(lp[:, P:], gen.logprobs, atol=1e-5, rtol=1e-5)  # temperature 1, unfiltered


def test_eos_stops_a_row_and_masks_the_rest():
    m = small_gpt(seed=4)
    free = generate_batch(m, PROMPTS, 8, greedy=True)
    eos = int(free.response[0, 2])  # row 0 produces it at step 2 (or earlier)
    first = [int((r == eos).nonzero()[0]) if (r == eos).any() else None for r in free.response]
    gen = generate_batch(m, PROMPTS, 8, greedy=True, eos_id=eos, pad_id=0)
    for b, k in enumerate(first):
        if k is None:
            assert gen.response_mask[b].all()
            continue
        assert gen.response_mask[b, :k + 1].all() and not gen.response_mask[b, k + 1:].any()
        assert torch.equal(gen.response[b, :k + 1], free.response[b, :k + 1])  # same tokens up to the end token
        assert (gen.response[b, k + 1:] == 0).all() and (gen.logprobs[b, k + 1:] == 0).all()
    # every row stops: the loop ends early
    one = generate_batch(m, [PROMPTS[0]], 8, greedy=True, eos_id=eos)
    assert one.response.shape == (1, first[0] + 1) and one.response[0, -1] == eos and one.response_mask.all()


def test_seeded_sampling_is_reproducible_and_matches_the_one_sampler():
    m = small_gpt(seed=5)
    a = generate_batch(m, PROMPTS, 6, generator=torch.Generator().manual_seed(7))
    b = generate_batch(m, PROMPTS, 6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens)
    # equal-length prompts: no padding, the same draws as decoding.sample and GPT.generate
    prompts = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(3))
    g = generate_batch(m, list(prompts), 6, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(9))
    s = decoding.sample(m, prompts, 6, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(9), max_context=32)
    t = m.generate(prompts, 6, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(g.tokens, s) and torch.equal(s, t)


def test_long_prompts_are_cropped_to_the_block_size():
    m = small_gpt("learned", seed=6, block_size=8)
    long = torch.randint(0, V, (12,), generator=torch.Generator().manual_seed(4)).tolist()
    gen = generate_batch(m, [long, long[:3]], 5, greedy=True)
    assert gen.tokens.shape == (2, 17)
    assert torch.equal(gen.response[0], m.generate(torch.tensor([long]), 5, temperature=0)[0, 12:])
    assert torch.equal(gen.response[1], m.generate(torch.tensor([long[:3]]), 5, temperature=0)[0, 3:])


def test_generate_batch_errors_name_the_problem():
    m = small_gpt()
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        generate_batch(m, [[1, 2], []], 3)
    with pytest.raises(ValueError, match="prompts is empty"):
        generate_batch(m, [], 3)
    with pytest.raises(ValueError, match=r"prompts\[0\] holds the token id 17, outside \[0, vocab_size=17\)"):
        generate_batch(m, [[1, 17]], 3)
    with pytest.raises(ValueError, match="token id -1"):
        generate_batch(m, [torch.tensor([1, -1])], 3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        generate_batch(m, [[1, 2]], 0)
    with pytest.raises(ValueError, match=r"eos_id=17 is not a token id of this model \(vocab_size=17\)"):
        generate_batch(m, [[1, 2]], 3, eos_id=17)
    with pytest.raises(ValueError, match="pad_id must be >= 0"):
        generate_batch(m, [[1, 2]], 3, pad_id=-1)
    with pytest.raises(TypeError, match="list of prompts"):
        generate_batch(m, torch.tensor([[1, 2]]), 3)
    with pytest.raises(TypeError, match=r"prompts\[0\] must be a list of int token ids"):
        generate_batch(m, ["hello"], 3)
    with pytest.raises(ValueError, match="top_p must be in"):
        generate_batch(m, [[1, 2]], 3, top_p=1.5)
