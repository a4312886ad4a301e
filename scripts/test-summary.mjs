// Adds up the results of the test suites into one closing line: "N passed, N failed[, N skipped]".
// A suite whose report is missing counts as failed: it did not run to the end.
import { readFileSync, existsSync } from 'node:fs';

const [vitestJson, pytestXml] = process.argv.slice(2);
let passed = 0, failed = 0, skipped = 0;
const missing = [];

if (existsSync(vitestJson)) {
  const r = JSON.parse(readFileSync(vitestJson, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests + (r.numFailedTestSuites ?? 0);
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
} else missing.push('vitest');

if (existsSync(pytestXml)) {
  const xml = readFileSync(pytestXml, 'utf8');
  const attr = (name) => [...xml.matchAll(new RegExp(`<testsuite [^>]*\\b${name}="(\\d+)"`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
  const tests = attr('tests'), failures = attr('failures'), errors = attr('errors'), skips = attr('skipped');
  passed += tests - failures - errors - skips;
  failed += failures + errors;
  skipped += skips;
} else missing.push('pytest');

failed += missing.length;
if (missing.length) console.log(`suites that did not report: ${missing.join(', ')}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
