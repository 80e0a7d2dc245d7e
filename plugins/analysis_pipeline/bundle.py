"""The package's DAGs as an Airflow 3 DAG bundle.

Airflow 3 parses DAGs per bundle: the dag-processor lists a bundle's files, records each
DAG's bundle and path, and workers find a task's DAG again through them. This bundle is the
directory of DAG files inside the installed package (``analysis_pipeline.dags``), so the
DAGs are upgraded with the wheel, in step with the code they import, and nothing is copied
into a dags folder. Configure it beside the deployment's own bundles::

    [dag_processor]
    dag_bundle_config_list = [
      {"name": "dags-folder",
       "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
      {"name": "analysis_pipeline",
       "classpath": "analysis_pipeline.bundle.AnalysisPipelineDagBundle", "kwargs": {}}
    ]

Amazon MWAA manages the bundle list itself and syncs a dags folder from S3: there the
one-line loader that ``make mwaa`` writes (``devtools/mwaa.py``) imports the same DAG
objects.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from airflow.dag_processing.bundles.local import LocalDagBundle


def dags_folder() -> Path:
    """Where the installed package's DAG files are."""
    spec = importlib.util.find_spec("analysis_pipeline.dags")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("analysis_pipeline.dags is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class AnalysisPipelineDagBundle(LocalDagBundle):
    """``LocalDagBundle`` over the installed package's ``dags`` directory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("path", None)
        super().__init__(path=str(dags_folder()), **kwargs)
