"""AirflowClient against a small stand-in for Airflow's REST API (the real one: tests/e2e)."""

from __future__ import annotations

import pytest
from fake_airflow_api import FakeAirflowApi

from mlops_airflow.hooks.airflow_api import AirflowApiError, AirflowClient


@pytest.fixture
def api():
    with FakeAirflowApi() as api:
        yield api


def client_of(api: FakeAirflowApi) -> AirflowClient:
    return AirflowClient(f"http://127.0.0.1:{api.port}", api.login, api.password, timeout=5)


class TestAirflowClient:
    def test_an_expired_token_is_refreshed_once(self, api):
        client = client_of(api)
        assert client.backfills("batch_score_churn") == []
        api.token = "token-rotated"  # the server no longer takes the token the client holds
        assert client.backfills("batch_score_churn") == []
        assert [r["path"] for r in api.requests].count("/auth/token") == 2

    def test_a_server_refusing_every_token_is_a_401_after_one_refresh(self, api):
        api.reject_tokens = True
        with pytest.raises(AirflowApiError, match="401") as refused:
            client_of(api).backfills("batch_score_churn")
        assert refused.value.status == 401
        # token, request, one refresh, the request again: then the 401 is the answer.
        assert [r["path"].split("?")[0] for r in api.requests] == ["/auth/token", "/api/v2/backfills", "/auth/token", "/api/v2/backfills"]

    def test_wrong_credentials_are_a_401_at_once(self, api):
        with pytest.raises(AirflowApiError, match="401"):
            AirflowClient(f"http://127.0.0.1:{api.port}", api.login, "not-the-password", timeout=5).backfills("batch_score_churn")
        assert [r["path"] for r in api.requests] == ["/auth/token"]

    def test_a_read_with_no_answer_in_time_is_tried_again(self, api, monkeypatch):
        import mlops_airflow.hooks.airflow_api as airflow_api

        monkeypatch.setattr(airflow_api, "RETRY_PAUSE_SECONDS", 0.0)
        client = AirflowClient(f"http://127.0.0.1:{api.port}", api.login, api.password, timeout=0.3)
        api.stalls, api.gateway_errors = 1, [503]
        assert client.backfills("batch_score_churn") == []  # a stall, a 503, then the answer
        assert [r["path"].split("?")[0] for r in api.requests].count("/api/v2/backfills") == 3

    def test_a_read_that_never_answers_fails_after_its_tries_and_a_write_is_sent_once(self, api, monkeypatch):
        import mlops_airflow.hooks.airflow_api as airflow_api

        monkeypatch.setattr(airflow_api, "RETRY_PAUSE_SECONDS", 0.0)
        client = AirflowClient(f"http://127.0.0.1:{api.port}", api.login, api.password, timeout=0.3)
        client.token()
        api.stalls = airflow_api.GET_ATTEMPTS
        with pytest.raises((TimeoutError, OSError)):
            client.backfills("batch_score_churn")
        assert [r["path"].split("?")[0] for r in api.requests].count("/api/v2/backfills") == airflow_api.GET_ATTEMPTS
        api.gateway_errors = [404]
        with pytest.raises(AirflowApiError, match="404"):
            client.backfills("batch_score_churn")  # not a gateway's error: answered, not tried again
        assert [r["path"].split("?")[0] for r in api.requests].count("/api/v2/backfills") == airflow_api.GET_ATTEMPTS + 1

    def test_xcom_of_another_run(self, api):
        api.xcoms[("drift_monitor_churn", "scheduled__2026-03-01T00:00:00+00:00", "detect_drift")] = {"onset": "2026-02-26"}
        client = client_of(api)
        assert client.xcom("drift_monitor_churn", "scheduled__2026-03-01T00:00:00+00:00", "detect_drift") == {"onset": "2026-02-26"}
        assert client.xcom("drift_monitor_churn", "manual__other", "detect_drift") is None
