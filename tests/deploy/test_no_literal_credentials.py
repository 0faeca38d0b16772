"""A static check of dags/, include/ and helm/: no literal credential anywhere in them.

A value next to a password, secret, token or key name must be a reference (``${VAR}``,
``$(VAR)``, a Helm template, a Kubernetes Secret's name or key) or a documented
placeholder; URLs carry no ``user:password@``; no private keys or cloud access keys.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO_ROOT

SCANNED = ("dags", "include", "helm")
SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    ["']?(?P<key>[a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[a-z0-9_.-]*)["']?
    \s*[:=]\s*
    (?P<value>"[^"]*"|'[^']*'|\$\$?\{[^}]*\}|\{\{[^}]*\}\}|[^\s,}\]#]+)
    """
)
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<password>[^/\s@'\"]+)@", re.IGNORECASE)
KEY_MATERIAL = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|xox[bap]-[A-Za-z0-9-]{10,}")
# Keys whose value names a Secret (or its key), never holds one.
REFERENCE_KEYS = re.compile(r"(?i)(secretname|secretkey|secretkeyref|credentialssecret|credentials_secret|_secret$|secrets?$|token_path|serviceaccounttoken)")
PLACEHOLDERS = {"", "...", "change-me", "not-a-secret", "null", "none", "~", "true", "false"}


def is_reference(value: str) -> bool:
    value = value.strip("\"'")
    return value.lower() in PLACEHOLDERS or bool(re.fullmatch(r"\$\$?\{[^}]+\}|\$\([A-Z0-9_]+\)|\{\{.*\}\}|<[^>]+>", value))


def findings(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in SECRET_ASSIGNMENT.finditer(line):
            if not REFERENCE_KEYS.search(match.group("key")) and not is_reference(match.group("value")):
                found.append(f"line {number}: {match.group('key')} = {match.group('value')}")
        for match in URL_CREDENTIALS.finditer(line):
            if not is_reference(match.group("password")):
                found.append(f"line {number}: credentials in a URL")
        if KEY_MATERIAL.search(line):
            found.append(f"line {number}: key material")
    return found


def scanned_files() -> list[Path]:
    files = [p for folder in SCANNED for p in (REPO_ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) > 10
    return files


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_literal_credentials(path):
    assert findings(path.read_text(errors="replace")) == []


@pytest.mark.parametrize(
    "planted",
    [
        "password: hunter2",
        '"password": "s3cr3t-value"',
        "AIRFLOW__CORE__FERNET_KEY=abc \nMLFLOW_TRACKING_TOKEN = 'tok-123456'",
        "sql_alchemy_conn: postgresql://airflow:airflow@postgres/airflow",
        "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
)
def test_the_check_finds_planted_credentials(planted):
    assert findings(planted)


@pytest.mark.parametrize(
    "reference",
    [
        "password: ${MLFLOW_PIPELINE_PASSWORD}",
        "secretName: mlops-airflow-connections",
        "key: password",
        '"password": "..."',
        "value: $(MODEL_URI)",
        "mlflow_credentials_secret: mlflow-training-credentials",
    ],
)
def test_references_are_not_credentials(reference):
    assert findings(reference) == []
