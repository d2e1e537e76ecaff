"""The run engine: config → validation → run directory → tracking → recipe → artifact and manifest."""
