"""recipes/rlhf_ppo.py at smoke-test size: it writes results that read_results reads (evaluations with gold,
proxy, KL and per-category scores; the training history; the value head's warm-up), ships a policy that loads
with its checksum, skips finished runs, and resumes an interrupted run from its checkpoint."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from lmlib.assets import read_results
from lmlib.lm.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe():
    name = "rlhf_ppo_recipe"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / "rlhf_ppo.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def test_ppo_recipe_quick_writes_results_ships_a_policy_and_resumes(tmp_path):
    rec = _recipe()
    before = torch.get_num_threads()
    work, out = tmp_path / "w", tmp_path / "a"
    args = ["--quick", "--jobs", "1", "--work", str(work), "--runs", "ppo_b0.05_s1", "gold_b0.05_s1"]
    try:
        returned = rec.main(args + ["--out", str(out)])
        res = read_results(out / "ppo_results.json", "python recipes/rlhf_ppo.py")
        assert res == json.loads(json.dumps(returned))
        assert res["command"].startswith("python recipes/rlhf_ppo.py --quick") and res["machine"] and res["utc"]
        iters = res["recipe"]["iterations"]
        for name in ("ppo_b0.05_s1", "gold_b0.05_s1"):
            run = res["runs"][name]
            assert [e["iteration"] for e in run["evals"]] == list(range(iters + 1))
            assert len(run["history"]) == iters and run["history"][0]["kl"] == pytest.approx(0, abs=1e-5)
            first = run["evals"][0]
            assert 0 <= first["gold"] <= 1 and first["kl"] == pytest.approx(0, abs=1e-4)  # the tuned model itself
            assert set(first["per_category"]) <= set(rec.CATEGORIES) and first["shakespeare_val_loss"] > 0
            assert len(first["answers"]) == len(first["gold_scores"]) == len(run["eval_prompts"]) * \
                res["recipe"]["eval_samples"]
            assert 0 < run["warmup"]["explained_variance_fit"] <= 1
        # the two runs start from the same tuned model and see the same evaluation draws at iteration 0
        a, b = (res["runs"][n]["evals"][0] for n in ("ppo_b0.05_s1", "gold_b0.05_s1"))
        assert a["answers"] == b["answers"] and a["gold"] == b["gold"]
        # the shipped policy loads with its checksum and is the first run's final policy
        manifest = json.loads((out / "MANIFEST.json").read_text())
        gpt = GPT.from_checkpoint(out / "ppo_gpt.safetensors", expected_sha256=manifest["ppo_gpt.safetensors"]["sha256"])
        ckpt = GPT.from_checkpoint(work / "ppo_b0.05_s1.gpt.safetensors")
        for (k, v), (k2, v2) in zip(gpt.state_dict().items(), ckpt.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
        # finished runs are skipped; an interrupted run resumes from its checkpoint and ends the same
        done = work / "ppo_b0.05_s1.json"
        done.unlink()
        again = rec.main(args + ["--no-ship"])
        assert again["runs"]["gold_b0.05_s1"] == res["runs"]["gold_b0.05_s1"]
        assert again["runs"]["ppo_b0.05_s1"]["evals"] == res["runs"]["ppo_b0.05_s1"]["evals"]
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit, match="unknown runs"):
        rec.main(["--quick", "--runs", "nope", "--work", str(work)])


def test_the_whole_chain_runs_in_one_command(tmp_path):
    """SFT -> reward model on that SFT model -> PPO against that reward model, at smoke-test size."""
    spec = importlib.util.spec_from_file_location("rlhf_chain_recipe", ROOT / "recipes" / "rlhf_chain.py")
    chain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chain)
    before = torch.get_num_threads()
    try:
        out = chain.main(["--quick", "--threads", "1", "--work", str(tmp_path)])
    finally:
        torch.set_num_threads(before)
    assert set(out["seconds"]) == {"sft", "reward_model", "ppo"}
    assert json.loads((tmp_path / "chain.json").read_text()) == json.loads(json.dumps(out))
    # each step used the one before it: the reward model names the chain's SFT model, PPO both
    res = read_results(tmp_path / "ppo" / "ppo_results.json", "python recipes/rlhf_chain.py")
    from lmlib._io import sha256_file  # noqa: PLC0415
    assert res["sft_gpt_sha256"] == sha256_file(tmp_path / "sft" / "sft_gpt.safetensors")
    assert res["reward_gpt_sha256"] == sha256_file(tmp_path / "reward" / "quick_reward_gpt.safetensors")
    assert 0 <= out["ppo"]["gold"][1] <= 1


def test_shipped_ppo_results_match_the_manifest_and_the_shipped_policy():
    """The shipped results and policy are the recipe's: checksums match, every run is there with its evaluations,
    and the shipped policy gives the KL that the headline run recorded on its last held-out answers, which the
    gold judge and the shipped reward model score as recorded."""
    from lmlib.assets import ASSETS, load_ppo_gpt, load_reward_gpt, load_sft_gpt, manifest_sha256  # noqa: PLC0415
    from lmlib._io import sha256_file  # noqa: PLC0415
    from lmlib.rlhf.instructions import build_instructions  # noqa: PLC0415
    from lmlib.rlhf.ppo import gold_scorer, response_outputs, reward_model_scorer  # noqa: PLC0415
    from lmlib.rlhf.template import END, format_prompt  # noqa: PLC0415

    rec = _recipe()
    for name in ("ppo_results.json", "ppo_gpt.safetensors"):
        assert sha256_file(ASSETS / name) == manifest_sha256(name)
    res = read_results(ASSETS / "ppo_results.json", "python recipes/rlhf_ppo.py")
    assert set(res["runs"]) == set(rec.RUNS) and not res["quick"]
    assert res["sft_gpt_sha256"] == manifest_sha256("sft_gpt.safetensors")
    assert res["reward_gpt_sha256"] == manifest_sha256("reward_gpt.safetensors")
    iters, every = res["recipe"]["iterations"], res["recipe"]["eval_every"]
    for run in res["runs"].values():
        assert [e["iteration"] for e in run["evals"]] == list(range(0, iters + 1, every))
        assert len(run["history"]) == iters
    head = res["runs"][res["headline"]]
    assert res["summary"]["headline"]["gold_end"][0] == head["evals"][-1]["gold"]
    # the last evaluation of the headline run, re-scored with the shipped models
    sft, tok = load_sft_gpt()
    ppo, _ = load_ppo_gpt()
    rm, _ = load_reward_gpt()
    by_id = {e.id: e for e in build_instructions(seed=0)["test"]}
    k = res["recipe"]["eval_samples"]
    prompts = [by_id[i] for i in head["eval_prompts"] for _ in range(k)]
    last = head["evals"][-1]
    answers = last["answers"]
    gold = gold_scorer()(prompts, answers, [True] * len(prompts))
    assert gold.tolist() == pytest.approx(last["gold_scores"], abs=1e-4)
    end = tok.stoi[END]
    rows = [tok.encode(format_prompt(e)) for e in prompts]
    ans_ids = [tok.encode(a) for a in answers]
    max_new = res["recipe"]["ppo"]["max_new_tokens"]
    ended = [len(a) < max_new for a in ans_ids]  # an answer of max_new tokens was cut (no <|end|>)
    proxy = reward_model_scorer(rm, tok)(prompts, answers, ended)
    assert proxy.tolist() == pytest.approx(last["proxy_scores"], abs=2e-3)
    # KL of the shipped policy to the tuned GPT on those answers, recomputed as the recipe did
    P = max(map(len, rows))
    N = max(len(a) + e for a, e in zip(ans_ids, ended))
    tokens = torch.full((len(rows), P + N), end, dtype=torch.long)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for b, (p, a, e) in enumerate(zip(rows, ans_ids, ended)):
        tokens[b, P - len(p):P] = torch.tensor(p)
        full = a + ([end] if e else [])
        tokens[b, P:P + len(full)] = torch.tensor(full)
        mask[b, P - len(p):P + len(full)] = True
    with torch.no_grad():
        lp, _, _ = response_outputs(ppo, tokens, mask, P)
        rp, _, _ = response_outputs(sft, tokens, mask, P)
    kl = ((lp - rp) * mask[:, P:]).sum(1)
    assert float(kl.mean()) == pytest.approx(last["kl"], abs=1e-3)
