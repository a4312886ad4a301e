#!/usr/bin/env bash
# All tests: TypeScript (vitest) and the Python client end to end (pytest), after bootstrapping.
# Prints one closing line "N passed, N failed" over both suites.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0

echo "== vitest (gateway-server, schemas)"
npx vitest run --reporter=default --reporter=json --outputFile.json="$out/vitest.json" || status=1

echo "== pytest (dask_gateway client end to end)"
.venv/bin/python -m pytest gateway-server/test/e2e -q -p no:cacheprovider --junitxml="$out/pytest.xml" || status=1

node scripts/test-summary.mjs "$out/vitest.json" "$out/pytest.xml" || status=1
exit $status
