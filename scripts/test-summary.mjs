// Adds up the results of the test suites into one closing line: "N passed, N failed[, N skipped]".
// A suite whose report is missing counts as failed: it did not run to the end.
//   node scripts/test-summary.mjs VITEST_JSON PYTEST_XML[,PYTEST_XML...] [UI_JUNIT_XML]
// (pytest runs in more than one process: each writes its own report, and each must be there)
// UI_JUNIT_XML is Playwright's JUnit report of the JupyterLab UI tests (scripts/ui-tests.sh). Set
// UI_EXIT_CODE to Playwright's exit status: a failed run with no failing test in its report (global
// setup or teardown failed, or the global timeout hit) counts as one failure.
import { readFileSync, existsSync } from 'node:fs';

const [vitestJson, pytestXml, uiXml] = process.argv.slice(2);
let passed = 0,
  failed = 0,
  skipped = 0;
const missing = [];
const notes = [];

if (existsSync(vitestJson)) {
  const r = JSON.parse(readFileSync(vitestJson, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests + (r.numFailedTestSuites ?? 0);
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
} else missing.push('vitest');

/** Totals of a JUnit XML report over its <testsuite> elements (not the <testsuites> root). */
function junit(file) {
  const xml = readFileSync(file, 'utf8');
  const attr = (name) => [...xml.matchAll(new RegExp(`<testsuite [^>]*\\b${name}="(\\d+)"`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
  const tests = attr('tests'),
    failures = attr('failures'),
    errors = attr('errors'),
    skips = attr('skipped');
  // a skipped test (Playwright also reports tests it never ran as skipped) is never a pass
  return { passed: tests - failures - errors - skips, failed: failures + errors, skipped: skips };
}

function add(name, file) {
  if (!file) return undefined;
  if (!existsSync(file)) {
    missing.push(name);
    return undefined;
  }
  const r = junit(file);
  passed += r.passed;
  failed += r.failed;
  skipped += r.skipped;
  return r;
}

for (const f of pytestXml.split(',')) add(`pytest (${f.split('/').pop()})`, f);
const ui = add('ui (playwright)', uiXml);
const uiExit = Number(process.env.UI_EXIT_CODE ?? 0);
if (ui && uiExit !== 0 && ui.failed === 0) {
  failed += 1;
  notes.push(
    `ui (playwright) exited with ${uiExit} without a failing test in its report: global setup/teardown failed or the run timed out (see ui-tests/test-results/logs/)`,
  );
}

failed += missing.length;
if (missing.length) console.log(`suites that did not report: ${missing.join(', ')}`);
for (const n of notes) console.log(n);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
