"""Releases judged on live outcomes: the A/B test's two samples, the shadow's pairs, and the promotion's rule on the improvement."""

from __future__ import annotations

import pytest

from mlops_airflow.core.release_analysis import Verdict
from mlops_airflow.core.release_outcomes import OutcomeRule, judge_ab, judge_shadow

RULE = OutcomeRule(metric="roc_auc", comparison="non_inferiority", margin=0.005, confidence=0.95, resamples=300, min_rows=200, seed=1)


def answers(rows: int, *, noise: float, seed: int):
    """Binary labels and a model's scores for them: the more ``noise``, the worse its ranking."""
    import numpy as np

    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-2.0 * signal))).astype("int64")
    scores = 1.0 / (1.0 + np.exp(-(signal + rng.normal(scale=noise, size=rows))))
    return labels, scores, signal


def ab(new_noise: float, old_noise: float, rows: int = 1500, rule: OutcomeRule = RULE):
    new_labels, new_scores, _ = answers(rows, noise=new_noise, seed=2)
    old_labels, old_scores, _ = answers(rows, noise=old_noise, seed=3)
    return judge_ab(rule, new_version="5", old_version="4", new_labels=new_labels, new_scores=new_scores, old_labels=old_labels, old_scores=old_scores)


class TestJudgeAB:
    def test_a_clearly_better_new_version_is_successful(self):
        outcome = ab(new_noise=0.2, old_noise=2.0)
        assert outcome.verdict is Verdict.SUCCESSFUL, outcome
        assert outcome.new > outcome.old
        assert outcome.lower > 0
        assert (outcome.strategy, outcome.new_version, outcome.old_version, outcome.new_rows) == ("ab", "5", "4", 1500)

    def test_a_clearly_worse_new_version_fails(self):
        outcome = ab(new_noise=2.0, old_noise=0.2)
        assert outcome.verdict is Verdict.FAILED, outcome
        assert outcome.upper < -RULE.margin
        assert "falls short of non-inferiority (margin 0.005)" in outcome.reasons[0]

    def test_the_same_model_on_other_clients_is_inconclusive_under_superiority(self):
        """Non-inferiority would let an equal model pass only on far more rows than this: superiority must not."""
        rule = OutcomeRule(**{**RULE.__dict__, "comparison": "superiority"})
        outcome = ab(new_noise=0.5, old_noise=0.5, rule=rule)
        assert outcome.verdict is Verdict.INCONCLUSIVE, outcome
        assert outcome.lower < 0 < outcome.upper

    def test_too_few_labelled_answers_on_either_side_are_no_verdict(self):
        outcome = ab(new_noise=0.2, old_noise=2.0, rows=150)
        assert outcome.verdict is Verdict.INCONCLUSIVE
        assert outcome.improvement is None
        assert outcome.reasons == ("150 labelled answers of v5 and 150 of v4; a verdict needs 200 of each",)

    def test_one_class_only_is_no_verdict(self):
        import numpy as np

        labels, scores, _ = answers(400, noise=0.5, seed=4)
        outcome = judge_ab(
            RULE, new_version="5", old_version="4", new_labels=np.ones(400, dtype="int64"), new_scores=scores, old_labels=labels, old_scores=scores
        )
        assert outcome.verdict is Verdict.INCONCLUSIVE
        assert outcome.new is None
        assert "undefined" in outcome.reasons[0]


class TestJudgeShadow:
    def test_pairing_sees_a_small_improvement_on_the_same_requests(self):
        import numpy as np

        labels, _, signal = answers(2000, noise=0.0, seed=5)
        rng = np.random.default_rng(6)
        shared = rng.normal(scale=0.6, size=2000)
        old_scores = 1.0 / (1.0 + np.exp(-(signal + shared + rng.normal(scale=0.4, size=2000))))
        new_scores = 1.0 / (1.0 + np.exp(-(signal + shared)))
        outcome = judge_shadow(RULE, new_version="5", old_version="4", labels=labels, new_scores=new_scores, old_scores=old_scores)
        assert outcome.verdict is Verdict.SUCCESSFUL, outcome
        assert (outcome.strategy, outcome.new_rows, outcome.old_rows) == ("shadow", 2000, 2000)
        assert 0 < outcome.lower < outcome.improvement < outcome.upper

    @pytest.mark.parametrize(("rows", "verdict"), [pytest.param(100, Verdict.INCONCLUSIVE, id="too-few"), pytest.param(2000, Verdict.FAILED, id="worse")])
    def test_a_worse_shadow_fails_and_too_few_rows_are_no_verdict(self, rows, verdict):
        labels, good, _ = answers(rows, noise=0.2, seed=7)
        _, bad, _ = answers(rows, noise=3.0, seed=8)
        outcome = judge_shadow(RULE, new_version="5", old_version="4", labels=labels, new_scores=bad, old_scores=good)
        assert outcome.verdict is verdict, outcome

    def test_as_dict_is_json_ready(self):
        import json

        labels, scores, _ = answers(300, noise=0.5, seed=9)
        outcome = judge_shadow(RULE, new_version="5", old_version="4", labels=labels, new_scores=scores, old_scores=scores)
        data = json.loads(json.dumps(outcome.as_dict()))
        assert data["verdict"] == str(outcome.verdict)
        assert data["improvement"] == 0.0
