# Nabaa: one image for every process. The command picks which one runs:
#   docker run IMAGE api --host 0.0.0.0 --port 8000   (the default)
#   docker run IMAGE worker
#   docker run IMAGE scheduler
# docker-compose.yml starts them all; README.md, "Production with docker compose", says how.
# 3.12: its asyncio.wait_for never loses a cancellation (3.11's can, inside every redis-py command; the
# worker guards against that too, see workers/delivery.py raise_if_cancelled). The suite passes on both.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Everything the build needs: pyproject.toml, README.md (its `readme`), the packages it lists and
# web/. .dockerignore keeps out .venv, var/, .env, secrets/ and the tests.
COPY . /app

# A regular (not editable) install: the packages and core/data/*.json go to site-packages. web/ is not
# part of the package, so the API is told where it is with NABAA_WEB_DIR (service/pages.py).
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/nabaa --create-home \
      --shell /usr/sbin/nologin nabaa

ENV NABAA_WEB_DIR=/app/web \
    DATA_DIR=/var/lib/nabaa \
    NABAA_ENV=production

# uid 10001 must be able to read the VAPID key mounted into the container (chown 10001 the file).
USER nabaa
EXPOSE 8000

ENTRYPOINT ["nabaa"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
