"""The ``fargate_vcpu`` pool as code: what it must look like, and who keeps it so.

A task whose pool does not exist is never scheduled, and Airflow only logs a scheduler
warning about it: runs would wait silently forever. So the pool follows its lever by
itself: each parse of an analysis DAG records the lever's value on its launch task
(``pool_size``, serialized with the DAG), and the scheduler-side ``PoolCheckListener``, when
a run of that DAG starts, creates or resizes the pool to it (off the scheduler's thread, in
its own session: no Variable lookup and no lock inside the scheduling loop). A failure to
do so is logged as an error and alerted to Discord. ``make pool`` does the same by hand.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.listeners import hookimpl

from analysis_pipeline import config

log = logging.getLogger(__name__)

ANALYSIS_DAGS = ("task_analysis", "proctor_video")
LAUNCH_TASK_ID = "launch"


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


def check_pool_in_database(slots: int) -> str | None:
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
    return pool_problem(found, slots=slots)


POOL_DESCRIPTION = "Fargate vCPUs shared by all analyses; each launch takes its vCPUs"


def follow_lever(slots: int) -> str | None:
    """Create or resize the pool to ``slots`` (deferred tasks counted); what changed, or None."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        pool = session.scalar(select(Pool).where(Pool.pool == config.POOL_NAME))
        if pool is None:
            session.add(
                Pool(
                    pool=config.POOL_NAME,
                    slots=slots,
                    description=POOL_DESCRIPTION,
                    include_deferred=True,
                )
            )
            return f"created with {slots} slots"
        if pool.slots == slots and pool.include_deferred:
            return None
        change = f"resized from {pool.slots} to {slots} slots"
        pool.slots = slots
        pool.include_deferred = True
        return change


def lever_of(dag_run: Any) -> int | None:
    """The pool size the run's DAG was parsed with (its launch task's ``pool_size``)."""
    dag = getattr(dag_run, "dag", None)
    task = None
    if dag is not None and getattr(dag, "has_task", lambda _: False)(LAUNCH_TASK_ID):
        task = dag.get_task(LAUNCH_TASK_ID)
    size = getattr(task, "pool_size", None)
    try:
        return int(size) if size is not None else None
    except (TypeError, ValueError):
        return None


class _Found:
    def __init__(self, slots: int, include_deferred: bool) -> None:
        self.slots = slots
        self.include_deferred = include_deferred


class PoolCheckListener:
    """Scheduler side: a run of an analysis DAG starts -> the pool follows the lever."""

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        try:
            if getattr(dag_run, "dag_id", None) not in ANALYSIS_DAGS:
                return
            run = {"dag_id": str(dag_run.dag_id), "run_id": str(dag_run.run_id)}
            # Off the scheduler's thread: its own transaction waits for any pool row lock
            # the scheduler holds instead of deadlocking with it, and the alert's connection
            # lookup and HTTP never stall the scheduling loop.
            thread = threading.Thread(target=_keep, args=(run, lever_of(dag_run)), daemon=True)
            thread.start()
        except Exception as exc:  # never break the scheduler loop
            log.warning("pool check skipped (%s)", type(exc).__name__)


def _keep(run: dict[str, str], slots: int | None) -> None:
    try:
        if slots is None:
            problem = f"DAG {run['dag_id']!r} carries no pool size (parsed by an older version?)"
        else:
            change = follow_lever(slots)
            if change:
                log.warning("Airflow pool %r %s (the lever)", config.POOL_NAME, change)
            problem = check_pool_in_database(slots)
    except Exception as exc:
        problem = f"could not keep Airflow pool {config.POOL_NAME!r}: {type(exc).__name__}: {exc}"
    if problem is None:
        return
    log.error("%s (run %s of %s)", problem, run["run_id"], run["dag_id"])
    _alert(run, problem)


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
