"""Chapter 13's exercises: the chapter's own solutions pass, and typical mistakes are caught with a message that
says what to fix."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from exercise_support import chapter_exercise_tests, failure

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "13_instruction_tuning.md"
IDS = ["ch13.format_chat", "ch13.answer_mask", "ch13.masked_loss"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=5))

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


# ----------------------------------------------------------------------------- format_chat


def format_no_assistant_cue(turns):
    return "".join(f"<|user|>{t}" if r == "user" else f"<|assistant|>{t}<|end|>" for r, t in turns)


def format_no_end(turns):
    return "".join(f"<|user|>{t}" if r == "user" else f"<|assistant|>{t}" for r, t in turns) + "<|assistant|>"


def format_with_newlines(turns):
    return "\n".join(f"<|user|>{t}" if r == "user" else f"<|assistant|>{t}<|end|>" for r, t in turns) \
        + "\n<|assistant|>"


def format_stripped(turns):
    return "".join(f"<|user|>{t.strip()}" if r == "user" else f"<|assistant|>{t.strip()}<|end|>"
                   for r, t in turns) + "<|assistant|>"


@pytest.mark.parametrize("fn, hint", [
    (format_no_assistant_cue, "must end with <|assistant|>"),
    (format_no_end, "ends with <|end|>"),
    (format_with_newlines, "no spaces or newlines"),
    (format_stripped, "no stripping"),
])
def test_format_chat_mistakes_are_named(fn, hint):
    assert hint in failure("ch13.format_chat", fn)


# ----------------------------------------------------------------------------- answer_mask


@pytest.mark.parametrize("fn, hint", [
    (lambda p, a: torch.arange(p + a - 1) >= p, "also mask the first answer token"),
    (lambda p, a: torch.arange(p + a - 1) >= p - 2, "off by one: the target at position t is token t + 1"),
    (lambda p, a: torch.arange(p + a) >= p, "L - 1 targets"),
    (lambda p, a: (torch.arange(p + a - 1) >= p - 1).long(), "expected dtype torch.bool"),
    (lambda p, a: [t >= p - 1 for t in range(p + a - 1)], "expected a torch.Tensor"),
    (lambda p, a: torch.arange(p + a - 1) < p - 1, "wrong values"),  # the prompt instead of the answer
])
def test_answer_mask_mistakes_are_named(fn, hint):
    assert hint in failure("ch13.answer_mask", fn)


# ----------------------------------------------------------------------------- masked_loss


def loss_over_every_position(logits, targets):
    """Masked targets set to 0 loss but still counted in the mean."""
    per = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    return (per * (targets != -1)).mean()


def loss_mean_of_row_means(logits, targets):
    per = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    mask = (targets != -1).float()
    return ((per * mask).sum(1) / mask.sum(1)).mean()


def loss_without_ignore(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def loss_per_token(logits, targets):
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-1, reduction="none")


@pytest.mark.parametrize("fn, hint", [
    (loss_over_every_position, "-1 targets are not counted in the mean"),
    (loss_mean_of_row_means, "not the mean of the rows' means"),
    (loss_without_ignore, "raised IndexError"),
    (loss_per_token, "expected a 0-d tensor"),
])
def test_masked_loss_mistakes_are_named(fn, hint):
    assert hint in failure("ch13.masked_loss", fn)


def test_the_library_functions_pass():
    """The chapter shows that its hand-written versions equal lmlib's; lmlib's pass the same checks."""
    from lmlib.exercises import check
    from lmlib.lm.losses import masked_cross_entropy
    from lmlib.rlhf.chat import Turn
    from lmlib.rlhf.sft import collate
    from lmlib.rlhf.template import format_prompt

    check("ch13.format_chat", lambda turns: format_prompt([Turn(r, t) for r, t in turns]), quiet=True)
    check("ch13.answer_mask", lambda p, a: collate([(list(range(p)), list(range(a)))], 0)[1][0] != -1, quiet=True)
    check("ch13.masked_loss", masked_cross_entropy, quiet=True)
