"""DAG-side package of the analysis pipeline: config/levers, params, launchers, checks, alerts.

Airflow puts ``plugins/`` on ``sys.path``; this package is imported by the DAG files.
"""
