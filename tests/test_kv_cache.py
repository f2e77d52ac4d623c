"""The KV cache: GPT.forward(..., kv_cache=) and generate_batch(use_cache=True).

Equivalences against the uncached path, which is the reference: a cached step's logits equal the last
positions of a full forward; generate_batch with the cache gives the same tokens and log-probabilities
as without it, for every positional encoding, with left padding, end tokens, greedy and seeded sampling,
and past the block size (where rows fall back to recomputing their cropped window). Plus the cache's
own bookkeeping and clear errors."""
import pytest
import torch

from lmlib.lm.attention import KVCache
from lmlib.lm.decoding import generate_batch
from lmlib.lm.gpt import GPT, ContextTooLongError, GPTConfig

torch.set_num_threads(1)

ENCODINGS = ["none", "learned", "sinusoidal", "alibi", "rope"]
V = 17


def small_gpt(pos: str = "learned", seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32, pos_encoding=pos)
    model = GPT(GPTConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # sharper than the N(0, 0.02) init, so that greedy ties and near-ties are rare
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(8.0)
    return model


PADDED = [[3, 1, 4, 1, 5, 9, 2], [6, 5], [3, 5, 8, 9, 7]]  # left-padded to 7 columns
SAME_LENGTH = [[3, 1, 4, 1], [6, 5, 2, 2], [3, 5, 8, 9]]  # no padding


def assert_same_generation(a, b):
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.prompt_mask, b.prompt_mask)
    assert torch.equal(a.response_mask, b.response_mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def record_calls(model: GPT) -> list[tuple[tuple[int, ...], bool]]:
    """(idx shape, whether a kv_cache was passed) of every call of ``model``."""
    calls = []

    def hook(module, args, kwargs):
        calls.append((tuple(args[0].shape), kwargs.get("kv_cache") is not None))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


# ---------------------------------------------------------------------------- the cached forward pass


@pytest.mark.parametrize("impl", ["fused", "manual"])
@pytest.mark.parametrize("pos", ENCODINGS)
@pytest.mark.parametrize("padded", [False, True])
def test_cached_steps_give_the_full_forward_logits(pos, impl, padded):
    m = small_gpt(pos, attn_impl=impl)
    B, P, N = 3, 6, 9
    ids = torch.randint(0, V, (B, P + N), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, P + N, dtype=torch.bool)
    if padded:
        mask[1, :4] = False
        mask[2, :1] = False
    with torch.no_grad():
        full = m(ids, attention_mask=mask if padded else None)[0]  # (B, P + N, V)
        cache = KVCache(m.config.n_layer)
        first = m(ids[:, :P], attention_mask=mask[:, :P] if padded else None, kv_cache=cache)[0]  # (B, P, V)
        steps = [first]
        for t in range(P, P + N):
            steps.append(m(ids[:, t:t + 1], kv_cache=cache)[0])  # (B, 1, V)
            assert len(cache) == t + 1
    cached = torch.cat(steps, dim=1)
    real = mask  # padding positions compute garbage nobody reads
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(cached[:, -1], full[:, -1], atol=1e-5, rtol=0)  # what decoding reads
    assert torch.equal(cache.attention_mask, mask)
    assert cache.next_position.tolist() == mask.sum(dim=1).tolist()
    assert all(k.shape == (B, 2, P + N, 16) for k in cache.k + cache.v)


@pytest.mark.parametrize("pos", ENCODINGS)
def test_padding_fed_after_the_prompt_stays_hidden(pos):
    """A new token fed as padding (mask False) stays hidden from every later token: the cache remembers it."""
    m = small_gpt(pos)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[True, True, True, False, True, True]])
    with torch.no_grad():
        full = m(ids, attention_mask=mask)[0][:, -1]
        cache = KVCache(2)
        m(ids[:, :3], kv_cache=cache)
        m(ids[:, 3:4], attention_mask=torch.tensor([[False]]), kv_cache=cache)  # padding in the middle
        m(ids[:, 4:5], kv_cache=cache)
        last = m(ids[:, 5:6], kv_cache=cache)[0][:, -1]
        without = m(ids[:, [0, 1, 2, 4, 5]])[0][:, -1]  # the sequence without the padded token
    torch.testing.assert_close(last, full, atol=1e-5, rtol=0)
    if pos != "alibi":  # ALiBi's bias counts columns (i - j), so a hole in the middle is not the same as no token
        torch.testing.assert_close(last, without, atol=1e-5, rtol=0)
    assert cache.next_position.tolist() == [5]


def test_the_cache_grows_and_keeps_every_key():
    cache = KVCache(1)
    ks, vs = [], []
    for t in range(40):  # 1 + 1 + ... past the initial capacity several times
        k, v = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
        ks.append(k)
        vs.append(v)
        k_all, v_all = cache.update(0, k, v)
        assert k_all.shape == (2, 3, t + 1, 4)
    assert torch.equal(k_all, torch.cat(ks, dim=2)) and torch.equal(v_all, torch.cat(vs, dim=2))
    assert torch.equal(cache.k[0], torch.cat(ks, dim=2))


# ---------------------------------------------------------------------------- generate_batch: cached == uncached


def pick_eos(m: GPT, prompts) -> int:
    """A token the model produces early in some row (greedy), so that rows end at different steps."""
    free = generate_batch(m, prompts, 8, greedy=True, use_cache=False)
    return int(free.response[0, 2])


@pytest.mark.parametrize("pos", ENCODINGS)
@pytest.mark.parametrize("prompts", [PADDED, SAME_LENGTH], ids=["left-padded", "same-length"])
@pytest.mark.parametrize("with_eos", [False, True], ids=["no-eos", "eos"])
def test_greedy_generation_is_the_same_with_and_without_the_cache(pos, prompts, with_eos):
    m = small_gpt(pos)
    eos = pick_eos(m, prompts) if with_eos else None
    plain = generate_batch(m, prompts, 12, greedy=True, eos_id=eos, pad_id=0, use_cache=False)
    cached = generate_batch(m, prompts, 12, greedy=True, eos_id=eos, pad_id=0)
    assert_same_generation(cached, plain)
    if with_eos:  # rows really ended early, at different steps
        ended = (~plain.response_mask).any(dim=1)
        assert bool(ended.any())


@pytest.mark.parametrize("pos", ENCODINGS)
@pytest.mark.parametrize("prompts", [PADDED, SAME_LENGTH], ids=["left-padded", "same-length"])
def test_seeded_sampling_is_the_same_with_and_without_the_cache(pos, prompts):
    m = small_gpt(pos, seed=3)
    eos = 4  # untrained model: every token is likely enough that some rows end early and others run on
    kw = dict(eos_id=eos, pad_id=0, temperature=1.3, top_k=10)
    plain = generate_batch(m, prompts * 4, 20, generator=torch.Generator().manual_seed(5), use_cache=False, **kw)
    cached = generate_batch(m, prompts * 4, 20, generator=torch.Generator().manual_seed(5), **kw)
    assert_same_generation(cached, plain)
    lengths = plain.response_mask.sum(dim=1)
    assert int(lengths.min()) < int(lengths.max())  # rows of different lengths: the eos handling was exercised


def test_the_cache_is_really_used_and_forcing_it_off_works():
    m = small_gpt("rope")
    calls = record_calls(m)
    generate_batch(m, PADDED, 5, greedy=True)
    assert calls == [((3, 7), True)] + [((3, 1), True)] * 4  # the prompts once, then one token per step
    calls.clear()
    generate_batch(m, PADDED, 5, greedy=True, use_cache=False)
    assert calls == [((3, 7 + t), False) for t in range(5)]  # the whole context every step


# ---------------------------------------------------------------------------- past the block size


@pytest.mark.parametrize("pos", ENCODINGS)
def test_long_prompts_fall_back_to_the_cropped_window(pos):
    m = small_gpt(pos, block_size=12)
    long = [(3 * i + 1) % V for i in range(20)]  # longer than block_size from the start
    for prompts in ([long], [long, [5, 6]], [long[:10], [5, 6, 7]]):  # the last one outgrows it while generating
        plain = generate_batch(m, prompts, 9, greedy=True, use_cache=False)
        cached = generate_batch(m, prompts, 9, greedy=True)
        assert_same_generation(cached, plain)
        sampled = [generate_batch(m, prompts * 3, 9, temperature=1.5, generator=torch.Generator().manual_seed(2),
                                  eos_id=4, use_cache=c) for c in (False, True)]
        assert_same_generation(sampled[1], sampled[0])


@pytest.mark.parametrize("pos", ENCODINGS)
def test_padding_beyond_the_block_size_keeps_the_cache(pos):
    """Cropping that removes only left padding changes nothing: the short row keeps reading the cache."""
    m = small_gpt(pos, block_size=12)
    prompts = [[(3 * i + 1) % V for i in range(11)], [5, 6]]  # row 0 outgrows block_size after 2 tokens
    calls = record_calls(m)
    cached = generate_batch(m, prompts, 8, greedy=True)
    plain = generate_batch(m, prompts, 8, greedy=True, use_cache=False)
    assert_same_generation(cached, plain)
    cached_calls = calls[:len(calls) - 8]
    assert sum(c for _, c in cached_calls) == 8  # every step used the cache (row 1 never outgrows 12 real tokens)
    assert [s for s, c in cached_calls if not c] == [(1, 12)] * 6  # row 0 alone, recomputed, from step 3 on


# ---------------------------------------------------------------------------- errors and modes


def test_bad_kv_cache_arguments_give_clear_errors():
    m = small_gpt("learned", block_size=8)
    x = torch.randint(0, V, (2, 5))
    with pytest.raises(ValueError, match="n_layer must be an int >= 1"):
        KVCache(0)
    with pytest.raises(ValueError, match="n_layer must be an int >= 1"):
        KVCache(True)
    with pytest.raises(TypeError, match="kv_cache must be a lmlib.lm.attention.KVCache"):
        m(x, kv_cache={"k": []})
    with pytest.raises(ValueError, match="built for n_layer=3 but this model has n_layer=2"):
        m(x, kv_cache=KVCache(3))
    with pytest.raises(ValueError, match="takes no targets"):
        m(x, x, kv_cache=KVCache(2))
    cache = KVCache(2)
    with torch.no_grad():
        m(x, kv_cache=cache)
        with pytest.raises(ValueError, match="holds 2 sequences but idx has B=3 rows"):
            m(torch.randint(0, V, (3, 1)), kv_cache=cache)
        with pytest.raises(ValueError, match="attention_mask has shape"):
            m(x[:, :1], attention_mask=torch.ones(2, 6, dtype=torch.bool), kv_cache=cache)
        with pytest.raises(ContextTooLongError, match="cannot slide a window over learned positions"):
            m(x[:, :4], kv_cache=cache)  # 5 + 4 > block_size 8
        assert len(cache) == 5 and cache.k[0].shape[2] == 5  # a refused call leaves the cache as it was
        with pytest.raises(ValueError, match="outside"):
            m(torch.full((2, 1), V), kv_cache=cache)
        with pytest.raises(ValueError, match="all False"):
            m(x, attention_mask=torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]), kv_cache=KVCache(2))
    m.train()
    with pytest.raises(RuntimeError, match="call model.eval"):
        m(x, kv_cache=KVCache(2))
    with pytest.raises(TypeError, match="use_cache must be True or False"):
        generate_batch(m.eval(), PADDED, 3, use_cache="yes")
    with pytest.raises(ValueError, match="layer must be in"):
        KVCache(2).update(2, torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))


def test_a_training_mode_model_or_a_plain_callable_generates_without_a_cache():
    m = small_gpt("alibi")
    reference = generate_batch(m, PADDED, 4, greedy=True, use_cache=False)
    m.train()  # no dropout in this config, so the outputs agree; the loop warns and recomputes
    with pytest.warns(UserWarning, match="training mode"):
        gen = generate_batch(m, PADDED, 4, greedy=True)
    assert_same_generation(gen, reference)
    m.eval()
    wrapped = generate_batch(lambda ids, attention_mask=None: m(ids, attention_mask=attention_mask)[0], PADDED, 4,
                             greedy=True, max_context=32)
    assert_same_generation(wrapped, reference)


def test_the_ordinary_forward_is_unchanged_by_a_cached_call():
    m = small_gpt("rope")
    x = torch.randint(0, V, (2, 9))
    before = m(x)[0]
    with torch.no_grad():
        m(x, kv_cache=KVCache(2))
    assert torch.equal(m(x)[0], before)


def test_the_book_gpt_generates_the_same_with_and_without_the_cache():
    """The shipped model (learned positions, block_size 128): padded prompts, a newline as end token, and one
    prompt that outgrows the block size while generating (that row switches to the cropped recompute)."""
    from lmlib.assets import load_book_gpt

    model, tok = load_book_gpt()
    model.eval()
    texts = ["ROMEO:\n", "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n",
             "KING HENRY:\nOnce more unto the breach, dear friends, once more;\nOr close the wall up with our English "
             "dead!\nIn peace there's",
             "JULIET:\nO Romeo, Romeo! "]
    prompts = [tok.encode(t) for t in texts]
    assert max(map(len, prompts)) + 40 > model.config.block_size
    newline = tok.encode("\n")[0]
    for kw in (dict(greedy=True), dict(temperature=1.0, generator_seed=0), dict(temperature=1.3, generator_seed=1)):
        seed = kw.pop("generator_seed", None)
        gens = [generate_batch(model, prompts * 2, 40, eos_id=newline, pad_id=newline, use_cache=c,
                               generator=None if seed is None else torch.Generator().manual_seed(seed), **kw)
                for c in (False, True)]
        assert torch.equal(gens[1].tokens, gens[0].tokens)
        assert torch.equal(gens[1].response_mask, gens[0].response_mask)
        # the plain loop itself is ~2e-5 from a one-pass recompute on this model: float rounding, not the cache
        torch.testing.assert_close(gens[1].logprobs, gens[0].logprobs, atol=5e-5, rtol=0)
