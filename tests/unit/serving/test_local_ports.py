"""LocalPorts: the local backend's live, blue and green ports, from the environment or 8500-8502."""

from __future__ import annotations

import pytest

from mlops_airflow.serving.base import Color
from mlops_airflow.serving.local_ports import LocalPorts


class TestLocalPorts:
    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            pytest.param({}, (8500, 8501, 8502), id="defaults"),
            pytest.param(
                {"MLOPS_SERVING_LIVE_PORT": "9600", "MLOPS_SERVING_BLUE_PORT": "9601", "MLOPS_SERVING_GREEN_PORT": "9602"},
                (9600, 9601, 9602),
                id="all-set",
            ),
            pytest.param({"MLOPS_SERVING_GREEN_PORT": "9702"}, (8500, 8501, 9702), id="one-set"),
            pytest.param({"MLOPS_SERVING_LIVE_PORT": ""}, (8500, 8501, 8502), id="empty-is-unset"),
        ],
    )
    def test_from_env(self, environ, expected):
        ports = LocalPorts.from_env(environ)
        assert (ports.live, ports.blue, ports.green) == expected

    def test_from_env_reads_the_process_environment_by_default(self, monkeypatch):
        for name, port in (("LIVE", "9800"), ("BLUE", "9801"), ("GREEN", "9802")):
            monkeypatch.setenv(f"MLOPS_SERVING_{name}_PORT", port)
        assert LocalPorts.from_env() == LocalPorts(live=9800, blue=9801, green=9802)

    def test_a_port_that_is_not_a_number_is_refused(self):
        with pytest.raises(ValueError, match="'eighty'"):
            LocalPorts.from_env({"MLOPS_SERVING_BLUE_PORT": "eighty"})

    @pytest.mark.parametrize(
        ("color", "port"),
        [
            pytest.param(Color.BLUE, 9601, id="blue"),
            pytest.param(Color.GREEN, 9602, id="green"),
            pytest.param("blue", 9601, id="blue-as-text"),
            pytest.param("green", 9602, id="green-as-text"),
        ],
    )
    def test_of(self, color, port):
        assert LocalPorts(live=9600, blue=9601, green=9602).of(color) == port
