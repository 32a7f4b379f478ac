"""Background processes: the delivery worker and the scheduler. They use `core` and never `service`."""
