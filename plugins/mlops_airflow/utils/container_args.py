"""Text for a Kubernetes container's command, args and env values, passed through verbatim.

Pure. Kubernetes expands ``$(VAR)`` in a container's ``command``, ``args`` and env ``value``
fields from the container's environment, which holds the MLflow credentials from their
Secret: a run's reason of ``$(MLFLOW_TRACKING_PASSWORD)`` would reach the trainer as the
password. The training pod operator passes every such value through :func:`kubernetes_literal`.
"""

from __future__ import annotations


def kubernetes_literal(value: str) -> str:
    """``value`` escaped so that Kubernetes' expansion gives back exactly ``value``.

    Kubernetes turns ``$$`` into ``$`` and expands ``$(NAME)``; with every ``$`` doubled,
    nothing is left to expand. Apply it once, to the final (rendered) text.
    """
    return value.replace("$", "$$")
