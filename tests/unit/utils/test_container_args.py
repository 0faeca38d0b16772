"""kubernetes_literal: text that Kubernetes' $(VAR) expansion gives back exactly as it was."""

from __future__ import annotations

import re

import pytest

from mlops_airflow.utils.container_args import kubernetes_literal


def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a command, args or env value (k8s.io/kubernetes third_party/forked/golang/expansion):
    ``$$`` is a literal ``$``, ``$(NAME)`` of a defined variable is its value, anything else stays as written."""

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, token) if name is not None else token

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$", one, text)


ENV = {"MLFLOW_TRACKING_PASSWORD": "s3cret", "HOME": "/tmp"}


class TestKubernetesLiteral:
    def test_the_expansion_stand_in_expands(self):
        """The positive control: without escaping, a reason would carry the password into the trainer."""
        assert kubernetes_expand("retrain: $(MLFLOW_TRACKING_PASSWORD)", ENV) == "retrain: s3cret"

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("$(MLFLOW_TRACKING_PASSWORD)", id="a-secret"),
            pytest.param("costs $5 and $$10", id="dollars"),
            pytest.param("$$(HOME)", id="escaped-already"),
            pytest.param("$(UNDEFINED) $(HOME", id="undefined-and-unclosed"),
            pytest.param("ends with $", id="trailing-dollar"),
            pytest.param("plain text, no dollars", id="plain"),
            pytest.param("", id="empty"),
        ],
    )
    def test_expansion_gives_back_the_value(self, value):
        assert kubernetes_expand(kubernetes_literal(value), ENV) == value

    def test_only_dollars_change(self):
        assert kubernetes_literal("a $(B) c") == "a $$(B) c"
