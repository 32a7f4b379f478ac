"""Settings: a wrong or missing one stops start-up with one line naming it and how to fix it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import ConfigError
from core.settings import load_settings

PRODUCTION = dict(nabaa_env="production", redis_url="redis://127.0.0.1:6379/0", editor_token=["t" * 24],
                  vapid_subject="mailto:webmaster@news.example", site_origin="https://news.example")


@pytest.mark.parametrize("overrides,expected", [
    ({"editor_token": []}, "EDITOR_TOKEN is required in production"),
    ({}, "VAPID_PRIVATE_KEY_FILE is required in production"),
    ({"vapid_subject": "mailto:me@localhost"}, "VAPID_SUBJECT"),
    ({"site_origin": "http://news.example"}, "SITE_ORIGIN: http:// is only for 127.0.0.1 or localhost"),
    ({"site_origin": "https://news.example/path"}, "SITE_ORIGIN"),
    ({"log_level": "verbose"}, "LOG_LEVEL: must be one of"),
    ({"publisher_timezone": "Mars/Olympus"}, "PUBLISHER_TIMEZONE"),
    ({"quiet_hours": "25:00-07:00"}, "QUIET_HOURS"),
    ({"editor_token": ["short"]}, "EDITOR_TOKEN: each token must be at least 16 characters"),
])
def test_a_wrong_production_setting_is_named(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **{**PRODUCTION, **overrides})
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_production_requires_the_site_origin(tmp_path):
    key = tmp_path / "vapid.pem"
    from core.vapid import write_private_key

    write_private_key(key)
    values = {**PRODUCTION, "vapid_private_key_file": key}
    load_settings(_env_file=None, **values)
    del values["site_origin"]
    with pytest.raises(ConfigError, match="SITE_ORIGIN is required in production"):
        load_settings(_env_file=None, **values)


def test_the_command_prints_one_line_and_exits(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "NABAA_ENV": "production", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "nabaa", "worker"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("nabaa: EDITOR_TOKEN is required")
