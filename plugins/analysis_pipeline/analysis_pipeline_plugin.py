"""Airflow plugin of the analysis pipeline: listeners that stop an abandoned container and
that check the vCPU pool whenever an analysis run starts.

Airflow loads every ``.py`` under the plugins folder as a top-level module named after the
file; ``.airflowignore`` next to this file keeps it to this one, the rest of the package is
imported normally (``plugins/`` is on ``sys.path``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from analysis_pipeline.launch.stopping import StopAnalysisListener
from analysis_pipeline.pool import PoolCheckListener


class AnalysisPipelinePlugin(AirflowPlugin):
    name = "analysis_pipeline"
    listeners = [StopAnalysisListener(), PoolCheckListener()]  # noqa: RUF012 - Airflow's API
