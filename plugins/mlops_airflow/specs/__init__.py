"""ModelSpec: load and validate ``include/models/<model>.yaml``.

A model is described once; every DAG, operator and the training entrypoint read the same
spec. Loading is cheap (YAML only) because DAG files call it at parse time. Every error
names the file and the dotted path of the offending field.

- :mod:`~mlops_airflow.specs.model`: the dataclasses a spec becomes.
- :mod:`~mlops_airflow.specs.reading`: safe YAML, the section reader, ``${MLOPS_*}`` expansion.
- :mod:`~mlops_airflow.specs.parsing` and :mod:`~mlops_airflow.specs.parsing_operations`: mapping to dataclasses.
- :mod:`~mlops_airflow.specs.loading`: files and folders, and the clashes between specs.
"""

from mlops_airflow.specs.loading import SpecFolder, find_spec, load_spec, load_spec_folder, load_spec_text, load_specs, model_specs
from mlops_airflow.specs.model import (
    MAX_SPEC_BYTES,
    CapacitySpec,
    ColumnContract,
    ComputeSpec,
    DataContract,
    DataSpec,
    DockerServingSpec,
    DriftSpec,
    EstimatorSpec,
    FeatureSpec,
    GatewayRef,
    LocalServingSpec,
    ModelSpec,
    ModelSpecError,
    PerformanceSpec,
    PromotionSpec,
    RowCountContract,
    ScheduleSpec,
    ServingSpec,
    SmokeSpec,
    TargetSpec,
    TrainingSpec,
)
from mlops_airflow.specs.parsing import parse_spec
from mlops_airflow.specs.reading import expand_env, normalise_uri

__all__ = [
    "MAX_SPEC_BYTES",
    "CapacitySpec",
    "ColumnContract",
    "ComputeSpec",
    "DataContract",
    "DataSpec",
    "DockerServingSpec",
    "GatewayRef",
    "DriftSpec",
    "EstimatorSpec",
    "FeatureSpec",
    "LocalServingSpec",
    "ModelSpec",
    "ModelSpecError",
    "PerformanceSpec",
    "PromotionSpec",
    "RowCountContract",
    "ScheduleSpec",
    "ServingSpec",
    "SmokeSpec",
    "SpecFolder",
    "TargetSpec",
    "TrainingSpec",
    "expand_env",
    "find_spec",
    "load_spec",
    "load_spec_folder",
    "load_spec_text",
    "load_specs",
    "model_specs",
    "normalise_uri",
    "parse_spec",
]
