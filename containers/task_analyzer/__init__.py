"""task_analyzer package."""
