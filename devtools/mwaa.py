"""``make mwaa``: the Amazon MWAA layout of the Airflow-side wheel (Python alone, no Airflow).

MWAA installs packages from ``requirements.txt`` and syncs ``dags/`` and ``plugins.zip``
from the environment's S3 bucket. A private wheel goes inside ``plugins.zip`` and is named
in ``requirements.txt`` by its path on the workers (``/usr/local/airflow/plugins/``); the
plugin itself is then found through the wheel's ``airflow.plugins`` entry point. MWAA keeps
its own DAG bundle list, so the DAGs reach it through a one-line loader in ``dags/``.

Writes ``<out>/requirements.txt``, ``<out>/plugins.zip`` and
``<out>/dags/analysis_pipeline_dags.py``.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

MWAA_PLUGINS = "/usr/local/airflow/plugins"
CONSTRAINTS = "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"
LOADER_NAME = "analysis_pipeline_dags.py"
# "airflow" and "dag" both appear in it: Airflow's safe-mode scan only parses such files.
LOADER = '''"""Airflow DAGs of the analysis pipeline, loaded from the installed analysis_pipeline
wheel (the DAG files live in the package; this file only puts them in the dags folder)."""

from analysis_pipeline.dags.proctor_video_dag import proctor_video_dag  # noqa: F401
from analysis_pipeline.dags.task_analysis_dag import task_analysis_dag  # noqa: F401
'''


def the_wheel(wheel_dir: Path) -> Path:
    wheels = sorted(wheel_dir.glob("analysis_pipeline_airflow-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one analysis_pipeline_airflow wheel in {wheel_dir}: {wheels}")
    return wheels[0]


def requirements(wheel: Path, *, airflow: str, python: str) -> str:
    """MWAA's requirements.txt: its Airflow's constraints (so nothing it ships moves) + the
    wheel from plugins.zip."""
    return (
        f'--constraint "{CONSTRAINTS.format(airflow=airflow, python=python)}"\n'
        f"{MWAA_PLUGINS}/{wheel.name}\n"
    )


def write_layout(wheel: Path, out: Path, *, airflow: str, python: str) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    (out / "dags").mkdir(parents=True)
    written = [out / "requirements.txt", out / "plugins.zip", out / "dags" / LOADER_NAME]
    written[0].write_text(requirements(wheel, airflow=airflow, python=python))
    with zipfile.ZipFile(written[1], "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(wheel, wheel.name)
    written[2].write_text(LOADER)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel-dir", type=Path, default=Path("dist"))
    parser.add_argument("--out", type=Path, default=Path("dist/mwaa"))
    parser.add_argument("--airflow-version", required=True, help="the MWAA environment's")
    parser.add_argument("--python-version", default="3.12", help="the MWAA environment's")
    args = parser.parse_args(argv)
    written = write_layout(
        the_wheel(args.wheel_dir),
        args.out,
        airflow=args.airflow_version,
        python=args.python_version,
    )
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
