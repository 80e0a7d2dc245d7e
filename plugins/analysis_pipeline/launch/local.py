"""local mode: run the container entrypoint as a child process with the same environment.

Used by the demo, the end-to-end tests and ``make airflow``. The child's log lines stream
into the Airflow task log as they come; the last few are kept for the failure alert.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from analysis_pipeline import config
from analysis_pipeline.alerts import breaker
from analysis_pipeline.callback.tasks import failures_recorded
from analysis_pipeline.contract import local_process_env
from analysis_pipeline.launch import admission
from analysis_pipeline.launch.completion import (
    classify_run,
    own_result,
    run_deadline_seconds,
    run_id_of,
)
from analysis_pipeline.launch.prior import reusable_result
from analysis_pipeline.outcome import LOG_TAIL_LINES
from analysis_pipeline.params import request_from_context

KILL_GRACE_SECONDS = 10


class LocalAnalysisOperator(BaseOperator):
    """Run the container module (``ANALYSIS_LOCAL_COMMAND``, default ``python -m <module>``
    with this interpreter) and classify its exit code and result.json."""

    ui_color = "#e8f4ea"
    # Serialized with the DAG, so the scheduler sees the pool size this parse read.
    template_fields = ("pool_size",)

    def __init__(
        self,
        *,
        kind: config.Kind,
        execution_timeout: timedelta,
        pool_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.kind = kind
        self.pool_size = pool_size
        self._process: subprocess.Popen[str] | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        with failures_recorded(context, step="launch"):  # for the result callback
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        request = request_from_context(self.kind, context)
        run_id = run_id_of(context)
        env = local_process_env(request, run_id=run_id)
        if self.execution_timeout is not None:
            env["RUN_DEADLINE_SECONDS"] = str(run_deadline_seconds(self.execution_timeout))
        spec = config.CONTAINERS[self.kind]
        output_uri = env["OUTPUT_URI"]
        if reusable_result(request, output_uri, run_id=run_id) is not None:
            return {
                "exit_code": None,
                "status": "complete",
                "output_uri": output_uri,
                "result_uri": output_uri + "result.json",
                "reused": True,
            }
        hold = breaker.hold_until(context)
        if hold is not None:
            error = admission.not_admitted(
                context,
                "Gemini quota breaker open (an earlier run exhausted the quota)",
                not_before=datetime.fromtimestamp(hold, UTC),
            )
            self.log.warning("%s", error)
            raise error
        launched_at = datetime.now(UTC)
        self.log.info(
            "Running %s locally for %s (input %s, output %s)",
            spec.module,
            request.analysis_id,
            env["INPUT_URI"],
            env["OUTPUT_URI"],
        )
        command = config.local_command(spec.module)
        exit_code, last_lines = self._run(command, env)
        result_uri, result = own_result(output_uri, launched_at)
        classified = classify_run(
            context, request.analysis_id, exit_code=exit_code, result=result, last_lines=last_lines
        )
        return {
            "exit_code": exit_code,
            "status": classified.get("status"),
            "output_uri": output_uri,
            "result_uri": result_uri,
            "reused": False,
        }

    def _run(self, command: list[str], env: Mapping[str, str]) -> tuple[int, list[str]]:
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        # Own process group, so a timeout or kill takes ffmpeg children down with it.
        self._process = subprocess.Popen(
            command,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        try:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("[%s] %s", config.CONTAINERS[self.kind].container_name, line)
            exit_code = self._process.wait()
        finally:
            self._terminate()
        self.log.info("%s exited with code %s", command[-1], exit_code)
        return exit_code, list(tail)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.log.warning("Stopping the local analysis process (pid %s)", process.pid)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_kill(self) -> None:
        self._terminate()
