"""The launch step: ``task`` (the factory the DAGs use), ``ecs`` and ``local`` (the two
launchers), ``admission`` (when a launch may start), ``prior`` (never pay twice),
``completion`` (classification + breaker), ``stopping`` (stop abandoned containers)."""
