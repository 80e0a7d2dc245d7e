"""analysis_engine package."""
