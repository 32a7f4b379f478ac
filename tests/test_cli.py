"""The `nabaa` command's own subcommands, run as a user runs them; and which package may import which."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakepush import Subscriber

ROOT = Path(__file__).resolve().parent.parent


def nabaa(*args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nabaa", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_subscriptions_import_then_export(redis_url, prefix, tmp_path):
    env = {**os.environ, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "DATA_DIR": str(tmp_path)}
    good = [{**Subscriber.generate(endpoint=f"https://fcm.googleapis.com/fcm/send/abc{i}:APA91b{i}").subscription_json(),
             "topics": ["sports"], "lang": "ar"} for i in range(3)]
    lines = [json.dumps(good[0]), json.dumps({**good[1], "endpoint": "http://fcm.googleapis.com/x"}),
             "not json", "", json.dumps(good[1]), json.dumps(good[2]), json.dumps(good[2])]
    result = nabaa("subscriptions", "import", "-", env=env, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "imported 3 new, 1 updated, 2 bad lines" in result.stdout
    assert "line 2: endpoint:" in result.stderr and "line 3:" in result.stderr
    exported = nabaa("subscriptions", "export", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(r["endpoint"] for r in rows) == sorted(g["endpoint"] for g in good)
    by_endpoint = {r["endpoint"]: r for r in rows}
    for g in good:
        assert by_endpoint[g["endpoint"]]["keys"] == g["keys"] and by_endpoint[g["endpoint"]]["topics"] == ["sports"]
    # The export is an import: moving between deployments loses nothing.
    again = nabaa("subscriptions", "import", "-", env=env, stdin=exported.stdout)
    assert "imported 0 new, 3 updated, 0 bad lines" in again.stdout


def test_vapid_generate_writes_a_private_key_once(tmp_path):
    out = tmp_path / "keys" / "vapid.pem"
    first = nabaa("vapid", "generate", "--out", str(out), env=dict(os.environ))
    assert first.returncode == 0, first.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    from core.vapid import load_private_key, public_key_b64

    assert public_key_b64(load_private_key(out)) in first.stdout
    second = nabaa("vapid", "generate", "--out", str(out), env=dict(os.environ))
    assert second.returncode != 0 and "exists already" in second.stderr
    assert "PRIVATE KEY" not in first.stdout + first.stderr  # the private key is never printed


FORBIDDEN = {"core": {"service", "workers", "nabaa", "bench"}, "service": {"workers", "nabaa", "bench"},
             "workers": {"service", "nabaa", "bench"}}


def test_imports_point_one_way():
    """service/ and workers/ share core/ and never import each other; core/ imports neither."""
    wrong = []
    for package, forbidden in FORBIDDEN.items():
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                for name in names:
                    if name.split(".")[0] in forbidden:
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert wrong == []
