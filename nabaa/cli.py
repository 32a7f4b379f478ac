"""`nabaa`: the one command, and the composition root that knows both the API and the workers.

    nabaa run            API + worker + scheduler (+ an embedded Redis when REDIS_URL is unset)
    nabaa api            the FastAPI app (uvicorn)
    nabaa worker         one delivery worker
    nabaa scheduler      the single scheduler
    nabaa subscriptions import FILE | export
    nabaa dead list | retry ALERT_ID
    nabaa vapid generate [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from core.errors import ConfigError


def _settings(**overrides):
    from core.settings import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        sys.exit(f"nabaa: {exc}")


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _require_redis(settings) -> None:
    if settings.redis_url is None:
        sys.exit("nabaa: REDIS_URL: set it to your Redis, e.g. redis://127.0.0.1:6379/0 "
                 "(or use `nabaa run`, which starts one)")


def cmd_api(args) -> None:
    import uvicorn

    from service.app import create_app

    settings = _settings()
    _require_redis(settings)
    _logging(settings.log_level)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        sys.exit(f"nabaa: {exc}")
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), proxy_headers=True,
                server_header=False, access_log=args.access_log)


def _run_loop(coro) -> None:
    """uvloop where it is installed (it is with the project): a faster event loop for the hot path."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_worker(args) -> None:
    from workers.runtime import run_worker

    settings = _settings()
    _require_redis(settings)
    _logging(settings.log_level)
    try:
        _run_loop(run_worker(settings, burst=args.burst))
    except ConfigError as exc:
        sys.exit(f"nabaa: {exc}")


def cmd_scheduler(args) -> None:
    from workers.scheduler import run_scheduler

    settings = _settings()
    _require_redis(settings)
    _logging(settings.log_level)
    try:
        _run_loop(run_scheduler(settings))
    except ConfigError as exc:
        sys.exit(f"nabaa: {exc}")


def cmd_run(args) -> None:
    from nabaa.devrun import run_all

    sys.exit(run_all(args))


def cmd_vapid_generate(args) -> None:
    from core.vapid import public_key_b64, write_private_key

    out = Path(args.out)
    try:
        key = write_private_key(out)
    except FileExistsError:
        sys.exit(f"nabaa: {out} exists already; a new key makes every browser subscribe again. "
                 "Choose another --out, or remove the file on purpose.")
    print(f"wrote {out} (mode 0600). Set VAPID_PRIVATE_KEY_FILE={out}")
    print(f"public key (applicationServerKey): {public_key_b64(key)}")


def cmd_subscriptions(args) -> None:
    from nabaa.transfer import export_subscriptions, import_subscriptions

    settings = _settings()
    if settings.redis_url is None and settings.is_dev:
        sys.exit("nabaa: REDIS_URL: set it to the Redis that holds the subscriptions "
                 "(nabaa run prints it as it starts)")
    if args.action == "import":
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            report = asyncio.run(import_subscriptions(settings, stream, sys.stderr))
        print(f"imported {report['created']} new, {report['updated']} updated, {report['bad']} bad lines")
        sys.exit(1 if report["bad"] and not (report["created"] or report["updated"]) else 0)
    else:
        count = asyncio.run(export_subscriptions(settings, sys.stdout))
        print(f"exported {count} subscriptions", file=sys.stderr)


def cmd_dead(args) -> None:
    from nabaa.deadletters import list_dead, retry_dead

    settings = _settings()
    _require_redis(settings)
    if args.action == "list":
        count = asyncio.run(list_dead(settings, sys.stdout, args.limit))
        print(f"{count} dead letters", file=sys.stderr)
    else:
        try:
            new_id = asyncio.run(retry_dead(settings, args.alert_id))
        except LookupError as exc:
            sys.exit(f"nabaa: {exc}")
        print(f"queued again as alert {new_id}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nabaa", description="Real-time Web Push notifications for news sites")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="API + worker + scheduler (+ embedded Redis), for a laptop or a demo")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--workers", type=int, default=1, help="delivery worker processes (default 1)")
    run.set_defaults(func=cmd_run)

    api = sub.add_parser("api", help="the HTTP API alone, for production behind a proxy")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--access-log", action="store_true")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="one delivery worker; start as many as you like")
    worker.add_argument("--burst", action="store_true", help="exit once there is nothing left to send")
    worker.set_defaults(func=cmd_worker)

    scheduler = sub.add_parser("scheduler", help="the single scheduler")
    scheduler.set_defaults(func=cmd_scheduler)

    subs = sub.add_parser("subscriptions", help="bulk import and export (JSON lines)")
    subs_actions = subs.add_subparsers(dest="action", required=True)
    imp = subs_actions.add_parser("import", help="one PushSubscription JSON object per line; - reads stdin")
    imp.add_argument("file")
    subs_actions.add_parser("export", help="JSON lines to stdout")
    subs.set_defaults(func=cmd_subscriptions)

    dead = sub.add_parser("dead", help="alerts that were given up (dead letters)")
    dead_actions = dead.add_subparsers(dest="action", required=True)
    dead_list = dead_actions.add_parser("list", help="the newest dead letters, one JSON object per line")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_retry = dead_actions.add_parser("retry", help="send a given-up alert again, as a new alert")
    dead_retry.add_argument("alert_id")
    dead.set_defaults(func=cmd_dead)

    vapid = sub.add_parser("vapid", help="VAPID keys")
    vapid_actions = vapid.add_subparsers(dest="action", required=True)
    gen = vapid_actions.add_parser("generate", help="write a new key pair (PEM, mode 0600), print the public key")
    gen.add_argument("--out", default=os.environ.get("VAPID_PRIVATE_KEY_FILE", "vapid_private.pem"))
    vapid.set_defaults(func=cmd_vapid_generate)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
