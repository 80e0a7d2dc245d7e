"""Airflow plugin of the analysis pipeline: the listener that stops an abandoned container.

Airflow loads every ``.py`` under the plugins folder as a top-level module named after the
file; ``.airflowignore`` next to this file keeps it to this one, the rest of the package is
imported normally (``plugins/`` is on ``sys.path``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from analysis_pipeline.launch.stopping import StopAnalysisListener


class AnalysisPipelinePlugin(AirflowPlugin):
    name = "analysis_pipeline"
    listeners = [StopAnalysisListener()]  # noqa: RUF012 - AirflowPlugin's own attribute
