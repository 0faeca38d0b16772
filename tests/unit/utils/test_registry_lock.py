"""The registry lock: one holder at a time, abandoned locks broken, never someone else's released."""

from __future__ import annotations

import threading
import time

import pytest

from mlops_airflow.utils.registry_lock import TAG_EXPIRES, TAG_OWNER, RegistryLockTimeoutError, dead_holder_reason, lock_name, lock_owner, registry_lock


class InMemoryRegistry:
    """The three registry calls the lock uses, with MLflow's semantics (create fails when the name exists)."""

    def __init__(self):
        self.models: dict[str, dict[str, str]] = {}
        self.guard = threading.Lock()

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
    registry.models[lock_name("churn")] = {TAG_OWNER: "dead-worker", TAG_EXPIRES: str(time.time() - 1)}
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
    registry.models[lock_name("churn")] = {TAG_OWNER: killed, TAG_EXPIRES: f"{time.time() + 900:.3f}"}
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
    registry.models[lock_name("churn")] = {TAG_OWNER: dead, TAG_EXPIRES: f"{time.time() + 900:.3f}"}
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
