"""Nabaa's shared core: settings, models, Redis keys and stores, and the Web Push protocol.

`service/` (the HTTP API) and `workers/` (delivery, scheduling) both build on this package and never
import each other; only the `nabaa` command, the composition root, knows both.
"""
