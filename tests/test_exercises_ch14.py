"""Chapter 14's exercises: the chapter's own solutions pass; typical mistakes fail with a message that helps."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlib.exercises import ExerciseFailed, check
from exercise_support import chapter_exercise_tests

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "14_reward_models.md"
IDS = ["ch14.ranking_loss", "ch14.last_token_scores", "ch14.agreement", "ch14.best_of_n_kl"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=4))

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def loss_flat_mean(scores, ranks):  # every pair of the batch weighted equally, not every prompt
    better = ranks[:, :, None] > ranks[:, None, :]
    return -F.logsigmoid(scores[:, :, None] - scores[:, None, :])[better].mean()


def loss_log_of_sigmoid(scores, ranks):  # underflows to -inf for a confident, wrong model
    better = ranks[:, :, None] > ranks[:, None, :]
    pair = torch.where(better, -torch.log(torch.sigmoid(scores[:, :, None] - scores[:, None, :])), torch.zeros(()))
    return (pair.sum((1, 2)) / better.sum((1, 2))).mean()


def loss_ties_as_pairs(scores, ranks):  # ">=" off the diagonal makes tied answers a pair, both ways
    K = ranks.shape[1]
    better = (ranks[:, :, None] >= ranks[:, None, :]) & ~torch.eye(K, dtype=torch.bool)
    pair = torch.where(better, -F.logsigmoid(scores[:, :, None] - scores[:, None, :]), torch.zeros(()))
    return (pair.sum((1, 2)) / better.sum((1, 2))).mean()


def last_token_off_by_one(values, mask):
    return values.gather(1, mask.long().sum(1)[:, None].clamp(max=values.shape[1] - 1))[:, 0]


def last_column(values, mask):
    return values[:, -1]


def agreement_ties_count(reward, better, worse):
    reward = np.asarray(reward)
    return float(np.mean(reward[better] >= reward[worse]))


def kl_log_n(n):
    return math.log(n)


@pytest.mark.parametrize("id, fn, message", [
    ("ch14.ranking_loss", loss_flat_mean, "average per prompt first"),
    ("ch14.ranking_loss", loss_log_of_sigmoid, "logsigmoid|inf|nan"),
    ("ch14.ranking_loss", loss_ties_as_pairs, "ties"),
    ("ch14.last_token_scores", last_token_off_by_one, "3 and 2 real tokens|different lengths"),
    ("ch14.last_token_scores", last_column, "3 and 2 real tokens|different lengths"),
    ("ch14.agreement", agreement_ties_count, "tie in reward"),
    ("ch14.best_of_n_kl", kl_log_n, "n = 2|n = 64|random n"),
])
def test_typical_mistakes_fail_with_a_message(id, fn, message):
    with pytest.raises(ExerciseFailed, match=message):
        check(id, fn, quiet=True)
