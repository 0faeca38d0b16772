"""The registry lock: one holder at a time, abandoned locks broken, never someone else's released."""

from __future__ import annotations

import threading
import time

import pytest

from mlops_airflow.hooks.registry_lock import (
    TAG_EXPIRES,
    TAG_NONCE,
    TAG_OWNER,
    ForeignRegistryLockError,
    RegistryLockLostError,
    RegistryLockTimeoutError,
    dead_holder_reason,
    lock_name,
    lock_owner,
    lock_tags,
    registry_lock,
    seal_tag,
    sealed_expiry,
)

SECRET = "the pipeline's lock secret"


class InMemoryRegistry:
    """The registry calls the lock uses, with MLflow's semantics (create fails when the name exists)."""

    def __init__(self, secret=SECRET):
        self.models: dict[str, dict[str, str]] = {}
        self.guard = threading.Lock()
        self.secret = secret

    def get_lock_secret(self):
        return self.secret

    def set_registered_model_tag(self, name, key, value):
        with self.guard:
            self.models[name][key] = value  # KeyError: MLflow's RESOURCE_DOES_NOT_EXIST

    def create_registered_model(self, name, *, tags, description):
        with self.guard:
            if name in self.models:
                return False
            self.models[name] = dict(tags)
            return True

    def get_registered_model_tags(self, name):
        return self.models.get(name)

    def delete_registered_model(self, name):
        self.models.pop(name, None)


def test_held_for_the_block_then_released():
    registry = InMemoryRegistry()
    with registry_lock(registry, "churn", owner="a"):
        assert registry.models[lock_name("churn")][TAG_OWNER] == "a"
    assert registry.models == {}


def test_released_when_the_block_raises():
    registry = InMemoryRegistry()
    with pytest.raises(RuntimeError), registry_lock(registry, "churn", owner="a"):
        raise RuntimeError("boom")
    assert registry.models == {}


def test_a_second_holder_waits_then_times_out_naming_the_holder():
    registry = InMemoryRegistry()
    with registry_lock(registry, "churn", owner="run-1"):
        started = time.monotonic()
        with pytest.raises(RegistryLockTimeoutError, match="held by 'run-1'"), registry_lock(registry, "churn", owner="run-2", timeout=0.3, poll=0.05):
            pass
        assert time.monotonic() - started >= 0.3
        assert registry.models[lock_name("churn")][TAG_OWNER] == "run-1"  # the waiter released nothing


def test_mutual_exclusion_between_threads():
    registry = InMemoryRegistry()
    inside, overlaps = [], []

    def work(owner):
        with registry_lock(registry, "churn", owner=owner, poll=0.005):
            inside.append(owner)
            if len(inside) > 1:
                overlaps.append(list(inside))
            time.sleep(0.01)
            inside.remove(owner)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert registry.models == {}


def test_an_abandoned_lock_is_broken_after_it_expires():
    registry = InMemoryRegistry()
    registry.models[lock_name("churn")] = lock_tags(lock_name("churn"), "dead-worker", expires=time.time() - 1, secret=SECRET)
    broken = []
    with registry_lock(registry, "churn", owner="alive", log=lambda *args: broken.append(args)):
        assert registry.models[lock_name("churn")][TAG_OWNER] == "alive"
    assert broken
    assert "dead-worker" in broken[0]


def test_never_releases_a_lock_it_no_longer_holds():
    registry = InMemoryRegistry()
    with registry_lock(registry, "churn", owner="slow", ttl=0.01):
        # Our lock expired and someone else took it over.
        registry.models[lock_name("churn")] = {TAG_OWNER: "next", TAG_EXPIRES: str(time.time() + 60)}
    assert registry.models[lock_name("churn")][TAG_OWNER] == "next"


def test_on_a_real_mlflow_store(mlflow_store):
    from mlops_airflow.hooks.mlflow import MlflowHook

    hook = MlflowHook(tracking_uri=mlflow_store)
    with registry_lock(hook, "churn", owner="a"):
        assert hook.get_registered_model_tags(lock_name("churn"))[TAG_OWNER] == "a"
        assert hook.create_registered_model(lock_name("churn"), tags={}, description="") is False
    assert hook.get_registered_model_tags(lock_name("churn")) is None


def test_a_lock_left_by_an_earlier_try_of_the_same_task_is_broken_at_once():
    registry = InMemoryRegistry()
    killed = lock_owner("retrain_churn/run-1/promote_champion", 1, host="worker-a", pid=111)
    registry.models[lock_name("churn")] = lock_tags(lock_name("churn"), killed, expires=time.time() + 900, secret=SECRET)
    started = time.monotonic()
    with registry_lock(registry, "churn", owner=lock_owner("retrain_churn/run-1/promote_champion", 2, host="worker-b", pid=222), timeout=5):
        assert registry.models[lock_name("churn")][TAG_OWNER].endswith("/try2@worker-b:222")
    assert time.monotonic() - started < 1


def test_a_lock_of_a_process_gone_from_this_host_is_broken_at_once():
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    registry = InMemoryRegistry()
    dead = lock_owner("retrain_churn/run-1/promote_champion", 1, pid=int(gone.stdout))
    registry.models[lock_name("churn")] = lock_tags(lock_name("churn"), dead, expires=time.time() + 900, secret=SECRET)
    with registry_lock(registry, "churn", owner=lock_owner("retrain_churn/run-2/promote_champion", 1), timeout=5):
        pass
    assert registry.models == {}


@pytest.mark.parametrize(
    ("holder", "reason"),
    [
        ("dag/run/promote/try1@h~1:10", "try 1 of the same task ended (this is try 2)"),
        ("dag/run/promote/try3@h~1:11", None),  # a later try, alive
        ("dag/other/promote/try1@h~1:10", "process 10 on h~1 no longer exists"),
        ("dag/other/promote/try1@h~2:10", None),  # another pid namespace: its pids mean nothing here
        ("dag/other/promote/try1@h~1:11", None),  # alive
        ("a person with a script", None),
        (None, None),
    ],
)
def test_dead_holder_reason(holder, reason):
    assert dead_holder_reason(holder, "dag/run/promote/try2@h~1:99", process_exists=lambda pid: pid == 11) == reason


class TestForeignLocks:
    """Any MLflow user can create the lock model, with any tags; only a sealed one is waited on or broken."""

    @pytest.mark.parametrize(
        "forged",
        [
            pytest.param({TAG_OWNER: "mallory", TAG_EXPIRES: "9999999999"}, id="hand-made"),
            pytest.param({TAG_OWNER: "mallory", TAG_EXPIRES: "1"}, id="hand-made-expired"),
            pytest.param({}, id="no-tags"),
            pytest.param(lock_tags(lock_name("churn"), "retrain_churn/r/promote_champion/try1@h~1:10", expires=9e9, secret="a guess"), id="other-secret"),
            pytest.param(lock_tags(lock_name("other"), "retrain_other/r/promote_champion/try1@h~1:10", expires=9e9, secret=SECRET), id="seal-of-another-lock"),
        ],
    )
    def test_is_reported_at_once_naming_the_lock_and_how_to_remove_it(self, forged):
        registry = InMemoryRegistry()
        registry.models[lock_name("churn")] = dict(forged)
        started = time.monotonic()
        with pytest.raises(ForeignRegistryLockError) as refused, registry_lock(registry, "churn", owner="rollback", timeout=30):
            pytest.fail("entered a block under someone else's lock")
        message = str(refused.value)
        assert "'churn.promotion-lock'" in message
        assert "was not created by this pipeline" in message
        assert f"claims {forged.get(TAG_OWNER, 'nobody')!r}" in message
        assert "delete_registered_model('churn.promotion-lock')" in message
        assert time.monotonic() - started < 5  # not waited on
        assert registry.models[lock_name("churn")] == forged  # not stolen either

    def test_a_seal_whose_expiry_was_pushed_out_does_not_verify(self):
        name = lock_name("churn")
        tags = lock_tags(name, "retrain_churn/r/promote_champion/try1@h~1:10", expires=time.time() + 60, secret=SECRET)
        key = seal_tag(tags[TAG_NONCE])
        expiry, mac = tags[key].split(":")
        tags[key] = f"{float(expiry) + 10**6:.3f}:{mac}"
        assert sealed_expiry(name, tags, SECRET)[0] is None
        assert "does not verify" in sealed_expiry(name, tags, SECRET)[1]

    def test_a_copied_seal_counts_only_until_its_own_expiry(self):
        """Replaying a real lock's tags with a far expiry tag: the sealed expiry is the one that counts."""
        registry = InMemoryRegistry()
        replayed = lock_tags(lock_name("churn"), "retrain_churn/r/promote_champion/try1@h~1:10", expires=time.time() - 1, secret=SECRET)
        registry.models[lock_name("churn")] = {**replayed, TAG_EXPIRES: "9999999999.000"}
        with registry_lock(registry, "churn", owner="rollback", timeout=5) as lease:
            assert registry.models[lock_name("churn")][TAG_NONCE] == lease.nonce

    def test_our_locks_verify(self):
        name = lock_name("churn")
        tags = lock_tags(name, "anyone", expires=1234.5, secret=SECRET)
        assert sealed_expiry(name, tags, SECRET) == (1234.5, None)

    def test_on_a_real_mlflow_store_keyed_by_the_connection(self, mlflow_store, monkeypatch):
        import json

        from mlflow.tracking import MlflowClient

        from mlops_airflow.hooks.mlflow import MlflowHook

        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": mlflow_store, "lock_secret": "s3cret"}}))
        hook = MlflowHook()
        with registry_lock(hook, "churn", owner="ours"):
            pass  # our own lock, made and released with the connection's secret
        # Another MLflow user gets there first, copying our format as well as it can.
        MlflowClient(mlflow_store, mlflow_store).create_registered_model(
            lock_name("churn"), tags=lock_tags(lock_name("churn"), "retrain_churn/r/promote_champion/try1@h~1:10", expires=9e9, secret="")
        )
        with pytest.raises(ForeignRegistryLockError, match="does not verify"), registry_lock(hook, "churn", owner="ours", timeout=30):
            pass
        assert hook.get_registered_model_tags(lock_name("churn")) is not None


def test_a_torn_read_of_a_lock_changing_hands_is_not_taken_for_a_foreign_lock():
    """Seen twice in the suite under load: MLflow answered a read of a lock being created or deleted with the model
    and none of its tags, and the reader called a legitimate lock foreign. A foreign lock must read the same three times."""
    registry = InMemoryRegistry()
    name = lock_name("churn")
    registry.models[name] = lock_tags(name, "holder", expires=time.time() + 0.5, secret=SECRET)  # expires soon
    real_read, torn = registry.get_registered_model_tags, []

    def read(model):
        if not torn:
            torn.append(1)
            return {}  # the model, without its tags
        return real_read(model)

    registry.get_registered_model_tags = read
    with registry_lock(registry, "churn", owner="next", timeout=5, poll=0.05) as lease:
        assert registry.models[name][TAG_NONCE] == lease.nonce
    assert torn == [1]


class TestRenewal:
    def test_a_late_renewal_never_spoils_the_lock_of_whoever_took_it_over(self):
        """Found by the concurrency test: a renewal reads "still ours", the lock is broken and taken over, then the renewal
        writes its seal; with one seal tag the new holder's lock no longer verified and everyone else called it foreign."""
        registry = InMemoryRegistry()
        name = lock_name("churn")
        with registry_lock(registry, "churn", owner="slow", renew_every=3600) as lease:
            ours = dict(registry.models[name])
            real_read = registry.get_registered_model_tags

            def read_then_lose_it(model):
                seen = real_read(model)
                registry.models[name] = lock_tags(name, "next", expires=time.time() + 60, secret=SECRET)  # broken and retaken
                return seen

            registry.get_registered_model_tags = read_then_lose_it
            assert lease.renew() is True  # it read "ours" and wrote
            registry.get_registered_model_tags = real_read
            taken = registry.models[name]
            assert taken[TAG_OWNER] == "next"
            assert sealed_expiry(name, taken, SECRET)[1] is None, "the new holder's lock must still verify"
            with pytest.raises(RegistryLockLostError):
                lease.ensure_held()
            registry.models[name] = ours  # let the block end as it would have
        assert registry.models == {}

    def test_a_holder_running_past_the_ttl_keeps_the_lock(self):
        registry = InMemoryRegistry()
        outcome = {}

        def contend():
            time.sleep(0.1)
            try:
                with registry_lock(registry, "churn", owner="contender", timeout=1.0, poll=0.02):
                    outcome["contender"] = "got the lock"
            except RegistryLockTimeoutError as err:
                outcome["contender"] = str(err)

        contender = threading.Thread(target=contend)
        with registry_lock(registry, "churn", owner="slow-holder", ttl=0.3, renew_every=0.05) as lease:
            contender.start()
            time.sleep(1.5)  # five TTLs of work
            lease.ensure_held()
            assert registry.models[lock_name("churn")][TAG_NONCE] == lease.nonce
            assert lease.renewals >= 10
        contender.join()
        assert "held by 'slow-holder'" in outcome["contender"]
        assert registry.models == {}

    def test_a_lock_lost_while_held_is_said_before_the_next_move(self):
        registry = InMemoryRegistry()
        logged = []
        with registry_lock(registry, "churn", owner="a", ttl=0.3, renew_every=0.02, log=lambda *args: logged.append(args)) as lease:
            registry.models.clear()  # a person deleted it
            registry.models[lock_name("churn")] = lock_tags(lock_name("churn"), "b", expires=time.time() + 60, secret=SECRET)
            deadline = time.monotonic() + 5
            while lease.lost is None and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(RegistryLockLostError, match="now held by 'b'"):
                lease.ensure_held()
        assert registry.models[lock_name("churn")][TAG_OWNER] == "b"  # theirs is left alone
        assert any("lost while held" in args[0] for args in logged)
