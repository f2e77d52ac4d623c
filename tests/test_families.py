"""lmlib.lm.architectures: bidirectional vs causal attention, BERT's masking proportions, cross-attention shapes and
padding, the data of the toy task worked by hand, a tiny encoder-decoder that learns to reverse words,
fill-in-the-blank, the comparison table, clear errors."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from lmlib._io import sha256_bytes
from lmlib.text.corpus import CorpusSplit, split_text
from lmlib.lm.architectures import SPECIAL_TOKENS, DecoderBlock, EncoderBlock, EncoderDecoder, MaskedLM, blank_accuracy, family_tokenizer, fill_in_the_blank, mask_tokens, masked_cross_entropy, mlm_batch_fn, reversal_accuracy, reversal_batch_fn, reversal_words, reverse_words
from lmlib.experiments.family_tree import family_table, family_table_markdown, load_family_results, run_family_tree, save_family_results
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.positional import ContextTooLongError
from lmlib.text.tokenizer import CharTokenizer
from lmlib.lm.train import TrainConfig, train

torch.set_num_threads(1)

TEXT = "the king is dead, long live the queen.\nmy lord, what news? abcdefghijklmnopqrstuvwxyz\n\n"
TOK = family_tokenizer(TEXT)


def cfg(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=TOK.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16), **kw})


def test_tokenizer_specials():
    assert TOK.itos[: 1 + len(SPECIAL_TOKENS)] == ["<unk>", *SPECIAL_TOKENS]
    assert TOK.encode("a[MASK]b") == [TOK.stoi["a"], TOK.stoi["[MASK]"], TOK.stoi["b"]]


def test_encoder_is_bidirectional_and_gpt_causal():
    torch.manual_seed(0)
    enc, gpt = MaskedLM(cfg()).eval(), GPT(cfg()).eval()
    x = torch.tensor([TOK.encode("the king is dead")])
    x2 = x.clone()
    x2[0, -1] = TOK.stoi["q"]  # change the LAST token
    e1, e2 = enc(x)[0], enc(x2)[0]
    assert not torch.allclose(e1[0, 0], e2[0, 0])  # the first output of the encoder sees the last token
    g1, g2 = gpt(x)[0], gpt(x2)[0]
    torch.testing.assert_close(g1[0, :-1], g2[0, :-1])  # the GPT's earlier outputs do not


def test_encoder_decoder_decoder_is_causal_and_sees_all_the_source():
    torch.manual_seed(0)
    m = EncoderDecoder(cfg()).eval()
    src = torch.tensor([TOK.encode("king")])
    tgt = torch.tensor([[TOK.stoi["[BOS]"], *TOK.encode("gni")]])
    base = m(src, tgt)[0]
    tgt2 = tgt.clone()
    tgt2[0, -1] = TOK.stoi["z"] if "z" in TOK.stoi else TOK.stoi["q"]
    torch.testing.assert_close(m(src, tgt2)[0][0, :-1], base[0, :-1])  # later target tokens: no effect
    src2 = src.clone()
    src2[0, -1] = TOK.stoi["a"]  # the last source token changes every decoder output
    changed = m(src2, tgt)[0]
    assert all(not torch.allclose(changed[0, t], base[0, t]) for t in range(tgt.shape[1]))


def test_mask_tokens_follows_bert_proportions():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(7, TOK.vocab_size, (200, 500), generator=g)
    chars = torch.arange(7, TOK.vocab_size)
    inputs, targets = mask_tokens(idx, TOK.stoi["[MASK]"], chars, 0.15, g)
    chosen = targets != -1
    n = chosen.sum().item()
    assert abs(n / idx.numel() - 0.15) < 0.005
    torch.testing.assert_close(targets[chosen], idx[chosen])  # targets are the originals
    torch.testing.assert_close(inputs[~chosen], idx[~chosen])  # unchosen positions are untouched
    masked = (inputs == TOK.stoi["[MASK]"]) & chosen
    kept = (inputs == idx) & chosen
    randomised = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # 10% random (a random draw equal to the original counts as kept): 0.1 * (1 - 1/N), 0.1 + 0.1/N
    N = len(chars)
    assert abs(randomised.sum().item() / n - 0.1 * (1 - 1 / N)) < 0.008
    assert abs(kept.sum().item() / n - (0.1 + 0.1 / N)) < 0.008
    assert bool(torch.isin(inputs[randomised], chars).all())
    again = mask_tokens(idx, TOK.stoi["[MASK]"], chars, 0.15, torch.Generator().manual_seed(0))
    first = mask_tokens(idx, TOK.stoi["[MASK]"], chars, 0.15, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again[0], first[0])  # seeded: reproducible


def test_masked_cross_entropy():
    logits = torch.randn(2, 3, 5)
    y = torch.tensor([[1, -1, 2], [-1, -1, 4]])
    ref = F.cross_entropy(logits[y != -1], y[y != -1])
    torch.testing.assert_close(masked_cross_entropy(logits, y), ref)
    zero = masked_cross_entropy(logits.requires_grad_(), torch.full((2, 3), -1))
    assert zero.item() == 0.0 and not math.isnan(zero.item())
    with pytest.raises(ValueError, match="targets must have shape"):
        masked_cross_entropy(logits, y[:, :2])


def test_cross_attention_shapes_and_padding():
    torch.manual_seed(0)
    c = cfg(n_head=4)
    block = DecoderBlock(c).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mem_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    y, self_w, cross_w = block(x, memory, mem_mask, need_weights=True)
    assert y.shape == (2, 5, 16) and self_w.shape == (2, 4, 5, 5) and cross_w.shape == (2, 4, 5, 7)
    assert torch.all(self_w.triu(1) == 0)  # causal
    torch.testing.assert_close(cross_w.sum(-1), torch.ones(2, 4, 5))
    assert torch.all(cross_w[1, :, :, 4:] == 0)  # padding is never attended to
    enc = EncoderBlock(c).eval()
    y, w = enc(x, need_weights=True)
    assert w.shape == (2, 4, 5, 5) and bool((w.triu(1) > 0).any())  # bidirectional: the future is visible
    with pytest.raises(ValueError, match="padding mask"):
        block(x, memory, mem_mask[:, :5])
    with pytest.raises(ValueError, match="memory must be"):
        block(x, torch.randn(2, 7, 8))


def test_padding_the_source_does_not_change_the_answer():
    torch.manual_seed(0)
    pad = TOK.stoi["[PAD]"]
    m = EncoderDecoder(cfg(), pad_id=pad).eval()
    tgt = torch.tensor([[TOK.stoi["[BOS]"], *TOK.encode("gn")]])
    short = m(torch.tensor([TOK.encode("king")]), tgt)[0]
    padded = m(torch.tensor([TOK.encode("king") + [pad, pad, pad]]), tgt)[0]
    torch.testing.assert_close(short, padded)


def test_reversal_batches_worked_by_hand():
    s = TOK.stoi
    enc = reversal_batch_fn({"train": ["abc"]}, TOK, 4, 2, "encdec")
    x, y = enc("train", torch.Generator().manual_seed(0))
    P, B, E = s["[PAD]"], s["[BOS]"], s["[EOS]"]
    a, b, c = s["a"], s["b"], s["c"]
    assert x[0].tolist() == [a, b, c, P, B, c, b, a, P]  # src (4) + tgt_in (5)
    assert y[0].tolist() == [c, b, a, E, -1]
    gpt = reversal_batch_fn({"train": ["abc"]}, TOK, 4, 1, "gpt")
    x, y = gpt("train", torch.Generator().manual_seed(0))
    S = s["[SEP]"]
    assert x[0].tolist() == [a, b, c, S, c, b, a, E, P]
    assert y[0].tolist() == [-1, -1, -1, c, b, a, E, -1, -1]  # loss only on the answer and [EOS]
    with pytest.raises(ValueError, match="longer than max_len"):
        reversal_batch_fn({"train": ["abcdef"]}, TOK, 4, 2, "gpt")
    assert reversal_words("The king, the KING and a lord!", 3, 4) == ["and", "king", "lord", "the"]


def test_a_tiny_encoder_decoder_learns_to_reverse():
    tok = family_tokenizer("abcdef")
    words = sorted({a + b + c for a in "abcd" for b in "abcd" for c in "abcd"})
    torch.manual_seed(0)
    m = EncoderDecoder(GPTConfig(vocab_size=tok.vocab_size, block_size=5, n_layer=1, n_head=2, n_embd=32, bias=False),
                       pad_id=tok.stoi["[PAD]"])
    from lmlib.lm.architectures import PackedSeq2Seq
    tcfg = TrainConfig(max_steps=100, batch_size=16, lr=1e-2, min_lr=1e-3, warmup_steps=10, eval_interval=0,
                       seed=0, device="cpu", progress=False, weight_decay=0.0)
    before = reversal_accuracy(m, tok, words)
    train(PackedSeq2Seq(m, 3), reversal_batch_fn({"train": words}, tok, 3, 16, "encdec"), tcfg, loss_fn=masked_cross_entropy)
    acc = reversal_accuracy(m, tok, words)
    assert before < 0.05 and acc > 0.1, (before, acc)  # guessing 3 letters of 4 at random: 1 / 64
    answers = reverse_words(m, tok, ["abc", "dcb"])
    assert len(answers) == 2 and all(set(a) <= set("abcd") for a in answers)


def test_fill_in_the_blank_and_blank_accuracy():
    torch.manual_seed(0)
    m = MaskedLM(cfg())
    out = fill_in_the_blank(m, TOK, "th_ k_ng", top_k=3)
    assert len(out) == 2 and all(len(b) == 3 for b in out)
    for blank in out:
        probs = [p for _, p in blank]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(ch not in SPECIAL_TOKENS and ch != "<unk>" for ch, _ in blank)
    ids = torch.tensor(TOK.encode(TEXT * 5))
    for model in (m, GPT(cfg())):
        acc = blank_accuracy(model, ids, TOK, context=8, n=20)
        assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="at least one blank"):
        fill_in_the_blank(m, TOK, "no blanks here")
    with pytest.raises(ContextTooLongError, match="block_size=16"):
        fill_in_the_blank(m, TOK, "_" * 17)
    with pytest.raises(TypeError, match="cannot see the right-hand side"):
        fill_in_the_blank(GPT(cfg()), TOK, "th_")
    with pytest.raises(ContextTooLongError):
        blank_accuracy(m, ids, TOK, context=17)


def test_clear_errors():
    with pytest.raises(ValueError, match="learned positions"):
        MaskedLM(cfg(pos_encoding="rope"))
    m = MaskedLM(cfg())
    with pytest.raises(ContextTooLongError, match="block_size=16"):
        m(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        m(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        m(torch.full((1, 3), TOK.vocab_size))
    with pytest.raises(ValueError, match="padding mask"):
        m(torch.zeros(1, 3, dtype=torch.long), key_mask=torch.ones(1, 4, dtype=torch.bool))
    e = EncoderDecoder(cfg())
    with pytest.raises(ValueError, match="batch size"):
        e(torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no \\[MASK\\] token"):
        mlm_batch_fn({"train": torch.zeros(50, dtype=torch.long)}, CharTokenizer.train("abc"), 8, 2)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), 1, [5, 6], mask_prob=0.0)
    with pytest.raises(ValueError, match="run_family_tree"):
        family_table({"nope": 1})


_CORPUS = None


@pytest.fixture(scope="module")
def tiny_tree():
    g = torch.Generator().manual_seed(0)
    letters = "abcdefghij"
    words = ["".join(letters[i] for i in torch.randint(10, (n,), generator=g).tolist())
             for n in torch.randint(3, 6, (3000,), generator=g).tolist()]
    text = "".join(" ".join(words[i : i + 50]) + ".\n\n" for i in range(0, len(words), 50))  # 60 "speeches"
    train_, val = split_text(text)
    corpus = CorpusSplit(text=text, train=train_, val=val, sha256=sha256_bytes(text.encode()))
    global _CORPUS
    _CORPUS = corpus
    return run_family_tree(steps=3, seq2seq_steps=3, n_layer=1, n_embd=16, n_head=2, block_size=16,
                           batch_size=4, n_eval=16, corpus=corpus)


def test_run_family_tree_structure(tiny_tree):
    r = tiny_tree
    assert set(r["models"]) == {"encoder", "decoder", "encdec", "decoder_seq2seq"}
    m = r["metrics"]
    for k in ("blank_acc_encoder", "blank_acc_decoder", "blank_acc_chance", "reversal_acc_encdec",
              "reversal_acc_decoder"):
        assert 0.0 <= m[k] <= 1.0
    assert r["params"]["decoder_seq2seq"] > r["params"]["decoder"]  # twice the blocks
    assert r["test_words"] and len(r["test_words"]) == len(set(r["test_words"]))
    rows = family_table(r)
    assert [row["family"] for row in rows] == ["encoder-only", "decoder-only", "encoder-decoder"]
    md = family_table_markdown(r)
    assert md.count("\n") == 4 and "encoder-decoder" in md
    assert r["metrics"]["mlm_targets"] == round(3 * 4 * 16 * 0.15) and r["metrics"]["gpt_targets"] == 3 * 4 * 16


def test_run_family_tree_one_part_and_errors(tiny_tree):
    r = run_family_tree(parts=("reversal",), seq2seq_steps=2, n_layer=1, n_embd=16, n_head=2, batch_size=4,
                        corpus=tiny_tree["settings"] and _CORPUS)
    assert set(r["models"]) == {"encdec", "decoder_seq2seq"}
    rows = family_table(r)
    assert rows[0]["measured"] == "not run" and "reversal" in rows[2]["measured"]
    with pytest.raises(ValueError, match="parts"):
        run_family_tree(parts="blanks")
    with pytest.raises(ValueError, match="mask_prob"):
        run_family_tree(mask_prob=0.0)


def test_save_load_round_trip(tiny_tree, tmp_path):
    path = save_family_results(tiny_tree, tmp_path / "ft.json", command="python recipes/family_tree.py", seed=0)
    loaded = load_family_results(path)
    assert loaded["format"] == "lmlib.families/1" and loaded["command"] == "python recipes/family_tree.py"
    assert "models" not in loaded and "tokenizer" not in loaded  # only what was measured
    for k in ("metrics", "params", "settings", "test_words", "n_train_words"):
        assert loaded[k] == json.loads(json.dumps(tiny_tree[k]))
    assert family_table(loaded) == family_table(tiny_tree)  # the table works on a loaded result
    assert family_table_markdown(loaded) == family_table_markdown(tiny_tree)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft.json"]  # atomic: no temporary file left behind


def test_load_family_results_errors(tiny_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="recipes/family_tree.py"):
        load_family_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_family_results(bad)
    bad.write_text(json.dumps({"format": "lmlib.extrapolation/1"}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a family-tree result"):
        load_family_results(bad)
    good = json.loads(save_family_results(tiny_tree, tmp_path / "ft.json").read_text(encoding="utf-8"))
    for broken, match in [({k: v for k, v in good.items() if k != "params"}, "missing"),
                          ({**good, "metrics": {**good["metrics"], "blank_acc_encoder": 1.5}}, r"\[0, 1\]"),
                          ({**good, "metrics": {"mlm_loss": 3.0}}, "no accuracy"),
                          ({**good, "params": {}}, "parameter count"),
                          ({**good, "test_words": "abc"}, "test_words")]:
        bad.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            load_family_results(bad)
    with pytest.raises(ValueError, match="run_family_tree"):
        save_family_results([1, 2], tmp_path / "x.json")
    with pytest.raises(ValueError, match="replace"):
        save_family_results(tiny_tree, tmp_path / "x.json", metrics={})
    assert not (tmp_path / "x.json").exists()


def test_shipped_family_result_is_valid():
    """The shipped full-mode JSON (recipes/family_tree.py) loads, and shows what the chapter teaches."""
    from lmlib.experiments.family_tree import RESULTS_PATH

    if not RESULTS_PATH.is_file():
        pytest.skip("no shipped family-tree result yet (run recipes/family_tree.py)")
    r = load_family_results()
    m = r["metrics"]
    assert m["blank_acc_encoder"] > m["blank_acc_decoder"] > m["blank_acc_chance"]
    assert m["reversal_acc_encdec"] > m["reversal_acc_decoder"]
    assert {"command", "created_utc", "seconds_total", "machine", "threads", "torch", "seed"} <= set(r)
    assert "| encoder-only |" in family_table_markdown(r)
