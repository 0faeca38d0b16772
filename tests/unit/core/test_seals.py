"""HMAC seals: a record verifies only with the secret, the purpose and the exact fields it was sealed with."""

from __future__ import annotations

import pytest

from mlops_airflow.core.seals import key, mac, verifies

SECRET = "lock-secret"
FIELDS = ("churn", "7", "promoted")


class TestKey:
    def test_no_secret_is_an_empty_key(self):
        assert key("", "decision") == b""

    def test_one_key_per_purpose(self):
        decision, lock = key(SECRET, "decision"), key(SECRET, "registry_lock")
        assert len(decision) == len(lock) == 32
        assert decision != lock
        assert key(SECRET, "decision") == decision
        assert key("another secret", "decision") != decision


class TestMac:
    def test_seals_already_in_the_registry_keep_verifying(self):
        """Seals are stored on model versions: the same inputs must give the same seal in every release."""
        assert mac(SECRET, "decision", *FIELDS) == "a1478c4245e74733f222e829f26123445da11262cd2352648615bb2b6fbfa1dd"

    def test_without_a_secret_anyone_can_compute_the_seal(self):
        """What the module's docstring warns of: with no secret the key is empty, a plain HMAC anyone can compute."""
        import hashlib
        import hmac

        assert mac("", "decision", *FIELDS) == hmac.new(b"", "\n".join(FIELDS).encode(), hashlib.sha256).hexdigest()

    @pytest.mark.parametrize(
        ("secret", "purpose", "fields"),
        [
            pytest.param("another secret", "decision", FIELDS, id="secret"),
            pytest.param("", "decision", FIELDS, id="no-secret"),
            pytest.param(SECRET, "registry_lock", FIELDS, id="purpose"),
            pytest.param(SECRET, "decision", ("churn", "8", "promoted"), id="a-field"),
            pytest.param(SECRET, "decision", ("7", "churn", "promoted"), id="field-order"),
            pytest.param(SECRET, "decision", ("churn", "7", "promoted", ""), id="an-empty-field-more"),
        ],
    )
    def test_any_change_changes_the_seal(self, secret, purpose, fields):
        assert mac(secret, purpose, *fields) != mac(SECRET, "decision", *FIELDS)


class TestVerifies:
    def test_its_own_seal_verifies(self):
        assert verifies(mac(SECRET, "decision", *FIELDS), SECRET, "decision", *FIELDS) is True

    def test_an_unsecured_seal_verifies_without_a_secret(self):
        assert verifies(mac("", "decision", *FIELDS), "", "decision", *FIELDS) is True

    @pytest.mark.parametrize(
        "found",
        [
            pytest.param(None, id="no-seal"),
            pytest.param("", id="empty"),
            pytest.param("0" * 64, id="made-up"),
            pytest.param(mac(SECRET, "decision", *FIELDS).upper(), id="upper-case"),
            pytest.param(mac(SECRET, "decision", *FIELDS)[:-1], id="truncated"),
            pytest.param(mac(SECRET, "registry_lock", *FIELDS), id="another-purpose"),
            pytest.param(mac("another secret", "decision", *FIELDS), id="another-secret"),
            pytest.param(mac("", "decision", *FIELDS), id="sealed-without-the-secret"),
            pytest.param(mac(SECRET, "decision", "churn", "8", "promoted"), id="another-version"),
        ],
    )
    def test_anything_else_does_not(self, found):
        assert verifies(found, SECRET, "decision", *FIELDS) is False

    @pytest.mark.parametrize(
        "found",
        [
            pytest.param("é", id="accented"),
            pytest.param(mac(SECRET, "decision", *FIELDS)[:-1] + "é", id="seal-with-a-non-ascii-last-char"),
            pytest.param("\u0663" * 64, id="arabic-indic-digits"),
            pytest.param("\ud800", id="lone-surrogate"),
        ],
    )
    def test_a_non_ascii_tag_does_not_verify(self, found):
        """Anyone with EDIT on a model can write the tag: a non-ASCII one is a forgery, not an error."""
        assert verifies(found, SECRET, "decision", *FIELDS) is False
