"""proctor_video package."""
