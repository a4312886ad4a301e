"""A short run of the API fuzzer (test-harness/fuzz/fuzz_api.py; the long one is `npm run fuzz`).

Schemathesis sends generated and mutated requests to every operation of /api/af/openapi.json as a
normal user, against a real gateway (local backend, single-user, small caps) fronting a real Rucio
test server. No answer may be a 5xx, and every answer must have a documented status and match
its documented schema. Everything the run started is gone afterwards.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "test-harness" / "fuzz"))

import fuzz_api  # noqa: E402

from conftest import IS_PEER  # noqa: E402

pytestmark = pytest.mark.skipif(IS_PEER, reason="the fuzzer targets AF Gateway's own OpenAPI document")


@pytest.mark.timeout(360)
def test_fuzzer_finds_no_server_error_nor_schema_mismatch():
    t0 = time.monotonic()
    figs, stack = fuzz_api.fuzz(cases_per_route=8, seed=1717)
    elapsed = time.monotonic() - t0
    print(f"\n{figs.summary()}\n(whole run with the Rucio server's start: {elapsed:.0f} s)")
    assert not figs.failures, "\n" + figs.summary() + "\n" + figs.output[-3000:]
    assert figs.exit_code == 0, figs.output[-3000:]
    assert figs.operations >= 40, f"only {figs.operations} operations were exercised"
    assert figs.cases >= 300, f"only {figs.cases} cases ran"
    assert not any(s >= 500 for s in figs.statuses), figs.summary()
    assert not stack.leftovers(), "processes of the fuzz run survived it"
