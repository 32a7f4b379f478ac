"""Fuzzing the API from its own OpenAPI document (schemathesis): whatever arrives, never a 5xx, and every
answer one the document describes.

Every operation of /openapi.json gets examples that fit its schema (positive) and examples that break it
(negative: wrong types, out-of-range values, missing fields, odd strings), sent in-process to the ASGI
app with the editor token, so the editor routes are fuzzed past their 401. The run is bounded and
derandomized so CI sees the same cases each time: about 1,500 API calls in ~15 s on two cores (the count
is printed; run with `-s` to see it).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)
from schemathesis.python import asgi as schemathesis_asgi
from tests.conftest import EDITOR_TOKEN

EXAMPLES_PER_OPERATION_AND_MODE = 100
# No 5xx; and, as api-v1.md requires of /openapi.json, every answer's status, content type and body are
# ones the document describes for that operation.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_openapi_fuzzing_finds_no_server_error(make_settings, capsys):
    from service.app import create_app

    # The limit at its top, so the reader routes are fuzzed rather than rate limited after 300 calls.
    app = create_app(make_settings(subscribe_rate_per_minute=499))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    try:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None,
                                     derandomize=True, phases=[Phase.explicit, Phase.generate],
                                     suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case):
                    response = case.call(headers={"Authorization": f"Bearer {EDITOR_TOKEN}"})
                    calls[operation.label] += 1
                    statuses[response.status_code] += 1
                    case.validate_response(response, checks=CHECKS)

                try:
                    fuzz()
                except Unsatisfiable:
                    # No input to break (e.g. GET /healthz): there is no negative case to make.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    finally:
        schemathesis_asgi.shutdown_lifespans()  # closes the app's Redis connection
    total = sum(calls.values())
    with capsys.disabled():
        print(f"\nschemathesis: {total} API calls over {len(operations)} operations; statuses {dict(statuses)}")
    assert len(operations) >= 12
    assert all(calls[operation.label] > 0 for operation in operations)
    assert total >= 500
    assert not [status for status in statuses if status >= 500]
