"""The ``fargate_vcpu`` pool as code: what it must look like, and a loud check.

A task whose pool does not exist is never scheduled, and Airflow only logs a scheduler
warning about it: runs would wait silently forever. So the pool is created from the lever
by the deploy step (``make pool``: ``airflow pools set`` then this check on what the
database holds), and the scheduler checks it whenever one of the analysis DAGs' runs
starts (``PoolCheckListener``), logging an error and alerting Discord when it is missing
or does not match the lever.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.listeners import hookimpl

from analysis_pipeline import config

log = logging.getLogger(__name__)

ANALYSIS_DAGS = ("task_analysis", "proctor_video")


def pool_problem(pool: Any | None, *, slots: int) -> str | None:
    """Why the pool as found (an object with slots/include_deferred, or None) is wrong."""
    if pool is None:
        return (
            f"Airflow pool {config.POOL_NAME!r} does not exist: launches can never be "
            "scheduled; run the deploy step `make pool`"
        )
    problems = []
    if int(getattr(pool, "slots", -1)) != slots:
        problems.append(f"has {getattr(pool, 'slots', '?')} slots, the lever says {slots}")
    if not getattr(pool, "include_deferred", False):
        problems.append("does not count deferred tasks (include_deferred is off)")
    if problems:
        return f"Airflow pool {config.POOL_NAME!r} " + " and ".join(problems) + "; run `make pool`"
    return None


def check_pool_in_database() -> str | None:
    """The problem with the pool in this process' metadata database (scheduler, CLI).

    Its own non-scoped session: the scheduler calls listeners in the middle of its loop, and
    closing the scoped session (``provide_session`` would) detaches the scheduler's rows.
    """
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        pool = session.scalar(select(Pool).where(Pool.pool == config.POOL_NAME))
        found = None if pool is None else _Found(pool.slots, bool(pool.include_deferred))
    return pool_problem(found, slots=config.pool_vcpus())


class _Found:
    def __init__(self, slots: int, include_deferred: bool) -> None:
        self.slots = slots
        self.include_deferred = include_deferred


class PoolCheckListener:
    """Scheduler side: a run of an analysis DAG starts while the pool is wrong -> be loud."""

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        try:
            if getattr(dag_run, "dag_id", None) not in ANALYSIS_DAGS:
                return
            problem = check_pool_in_database()
            if problem is None:
                return
            log.error("%s (run %s of %s)", problem, dag_run.run_id, dag_run.dag_id)
            # Off the scheduler's thread: the connection lookup may use the metastore
            # backend, whose scoped session is per thread (the scheduler's must stay open),
            # and Discord's HTTP must not stall the scheduling loop.
            alert = {"dag_id": str(dag_run.dag_id), "run_id": str(dag_run.run_id)}
            threading.Thread(target=_alert, args=(alert, problem), daemon=True).start()
        except Exception as exc:  # never break the scheduler loop
            log.warning("pool check skipped (%s)", type(exc).__name__)


def _alert(run: dict[str, str], problem: str) -> None:
    from analysis_pipeline.alerts import discord, grouping
    from analysis_pipeline.alerts.message import Alert
    from analysis_pipeline.shared_state import default_store

    try:
        url = discord.webhook_url()
    except Exception as exc:
        log.warning("pool alert not sent (%s)", type(exc).__name__)
        return
    if not url:
        return
    alert = Alert(
        dag_id=run["dag_id"],
        run_id=run["run_id"],
        analysis_id="all-runs",
        task_id="launch",
        try_number=0,
        reason=problem,
        error_type="PoolMisconfigured",
    )
    try:
        grouping.notify(alert, url, default_store())
    except Exception as exc:
        log.warning("pool alert not sent (%s)", type(exc).__name__)
