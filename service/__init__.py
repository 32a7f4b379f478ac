"""The HTTP API and the pages (FastAPI). It uses `core` and never `workers`."""
