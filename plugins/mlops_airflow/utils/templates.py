"""Templated fields that cannot be rendered fail the task at once, naming the field.

Where it sits: every operator and sensor of the package renders its fields through this
mixin. A template that cannot be rendered (an undefined context key, a Param of the wrong
shape) fails the same way on every try, so retrying it only costs the retry delays (about
ten minutes with the DAGs' defaults) before the same error. Raised as
``AirflowFailException``, Airflow's "do not retry" failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context


class FailFastTemplates:
    """Mix in before the operator's base class: ``class MyOperator(FailFastTemplates, BaseOperator)``."""

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        import jinja2
        from airflow.sdk.exceptions import AirflowFailException

        if not jinja_env:
            jinja_env = self.get_template_env()  # type: ignore[attr-defined]
        for field in self.template_fields:  # type: ignore[attr-defined]
            try:
                self._do_render_template_fields(self, [field], context, jinja_env, set())  # type: ignore[attr-defined]
            except jinja2.TemplateError as err:
                raise AirflowFailException(
                    f"{self.task_id}: the templated field {field!r} cannot be rendered ({type(err).__name__}: {err}); "  # type: ignore[attr-defined]
                    "a retry would fail the same way, so this task fails now. Check the run's Params and the DAG's template."
                ) from err
