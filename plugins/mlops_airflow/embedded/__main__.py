"""``python -m mlops_airflow.embedded {up,down,status,demo,release-demo,performance-demo}``: the embedded stack's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlops_airflow.embedded.stack import EmbeddedStack, StackConfig, StackError
from mlops_airflow.hooks.airflow_api import AirflowApiError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_airflow.embedded", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "demo", "release-demo", "performance-demo"])
    parser.add_argument("--model", default="churn", help="model spec the demo retrains (default: churn)")
    parser.add_argument("--strategy", default="canary", choices=["canary", "shadow", "ab"], help="release-demo: how live traffic moves (default: canary)")
    args = parser.parse_args(argv)
    config = StackConfig.from_env()
    stack = EmbeddedStack(config)
    try:
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")
        elif args.command == "status":
            for name, state in stack.status().items():
                print(f"{name}: {state}")
            for model, state in stack.serving_status().items():
                print(f"serving {model}: {state}")
        elif args.command == "release-demo":
            from mlops_airflow.embedded.release_demo import run_release_demo

            return 0 if run_release_demo(config, args.model, args.strategy) else 1
        elif args.command == "performance-demo":
            from mlops_airflow.embedded.performance_demo import run_performance_demo

            return 0 if run_performance_demo(config, args.model) else 1
        else:
            from mlops_airflow.embedded.demo import run_demo

            return 0 if run_demo(config, args.model) else 1
    except (StackError, TimeoutError, AirflowApiError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
