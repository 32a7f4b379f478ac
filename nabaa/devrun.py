"""`nabaa run`: everything in one process group for a laptop or a demo.

With REDIS_URL unset it starts an embedded `redis-server` (AOF under DATA_DIR), then the API, the
delivery worker(s) and the scheduler as child processes that share it; it prints where to go and the
editor token. Ctrl-C (or SIGTERM) stops all of it, the embedded Redis last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from core.errors import ConfigError
from core.settings import load_settings
from core.vapid import load_or_create_dev_key
from nabaa.embedded_redis import EmbeddedRedis


def _wait_ready(url: str, processes: list[subprocess.Popen], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def run_all(args) -> int:
    started = time.monotonic()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"nabaa: {exc}", file=sys.stderr)
        return 2
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis = None
    if settings.redis_url is None:
        redis = EmbeddedRedis(data_dir / "redis")
        try:
            redis.start()
        except RuntimeError as exc:
            print(f"nabaa: {exc}", file=sys.stderr)
            return 2
        env["REDIS_URL"] = redis.url
    env["DATA_DIR"] = str(data_dir)
    if "site_origin" not in settings.model_fields_set and settings.is_dev:  # not in the environment nor .env
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        env["SITE_ORIGIN"] = f"http://{host}:{args.port}"
    # Made once here, before the children start, so that they all read the same files.
    if settings.vapid_private_key_file is None:
        load_or_create_dev_key(settings.vapid_key_path)
    token = settings.tokens()[0]

    python = sys.executable
    commands = [[python, "-m", "nabaa", "api", "--host", args.host, "--port", str(args.port)]]
    commands += [[python, "-m", "nabaa", "worker"] for _ in range(max(args.workers, 1))]
    commands += [[python, "-m", "nabaa", "scheduler"]]
    children = [subprocess.Popen(command, env=env) for command in commands]

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    site = env.get("SITE_ORIGIN") or settings.site_origin
    if _wait_ready(f"http://{args.host if args.host not in ('0.0.0.0', '::') else '127.0.0.1'}:{args.port}/readyz",
                   children):
        print(
            f"\n  Nabaa is serving (ready in {time.monotonic() - started:.1f} s)\n"
            f"    reader page   {site}/\n"
            f"    editor page   {site}/admin/\n"
            f"    editor token  {token}\n"
            f"    Redis         {env['REDIS_URL']}{' (embedded, data in ' + str(redis.data_dir) + ')' if redis else ''}\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
    else:
        stopping = True
        print("nabaa: the API did not become ready; see the messages above", file=sys.stderr)
    code = 0
    try:
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"nabaa: {' '.join(child.args[2:4])} exited with {child.returncode}; stopping",
                          file=sys.stderr)
                    code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
        if redis is not None:
            redis.stop()
        print("nabaa: stopped", file=sys.stderr)
    return code


