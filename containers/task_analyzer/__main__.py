"""`python -m task_analyzer`: analyse one screen recording (environment contract in DESIGN.md)."""

from analysis_engine.runner import main
from task_analyzer.kind import TaskAnalysisKind

if __name__ == "__main__":
    main(TaskAnalysisKind())
