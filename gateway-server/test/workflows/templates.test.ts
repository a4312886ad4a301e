// yadage's templates (src/workflows/templates.ts) with hostile values: Python's str() of a value is
// made only as far as the room the command or publisher has left, so a value of megabytes is refused
// before it is built on the event loop, and control characters come out escaped as Python writes them.
import { describe, expect, it } from 'vitest';
import { formatDeep, formatTemplate, TemplateError } from '../../src/workflows/templates.js';

/** The TemplateError a call throws, and how long it took. */
function refused(f: () => unknown): { error: TemplateError; ms: number } {
  const t0 = performance.now();
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return { error: e as TemplateError, ms: performance.now() - t0 };
  }
  throw new Error('it was not refused');
}

describe('rendering values into templates', () => {
  it('renders as Python’s str(), control characters escaped inside containers', () => {
    const values = { d: { k: 'it\'s "q"\n\t\u0001\u007f\u0085\\', n: null, t: true, f: 1.5, l: ['a', 2] }, l: ['a b', 'c'], s: 'raw\nline' };
    expect(formatTemplate('{d}', values)).toBe(`{'k': 'it\\'s "q"\\n\\t\\x01\\x7f\\x85\\\\', 'n': None, 't': True, 'f': 1.5, 'l': ['a', 2]}`);
    expect(formatTemplate('{d.k}', { d: { k: "it's" } })).toBe("it's");
    expect(formatTemplate('x {l} y', values)).toBe('x a b c y');
    expect(formatTemplate('{s}', values)).toBe('raw\nline');
    expect(formatDeep(['{l}', { k: '{d.l}' }], values)).toEqual(["['a b', 'c']", { k: "['a', 2]" }]);
    expect(formatTemplate('{q}', { q: ["it's"] }, undefined, undefined, 'python')).toBe(`["it's"]`);
  });

  it('refuses a value of megabytes before building its text (it took a third of a second and 140 MB each time)', () => {
    const big = 'x'.repeat(7 * 1024 * 1024);
    for (const value of [{ k: big }, [big], ['x', { k: [big] }]]) {
      const { error, ms } = refused(() => formatTemplate('echo {x}', { x: value }));
      expect(error.message).toBe('it would be more than 1,048,576 characters long (pass long lists in a file)');
      expect(ms).toBeLessThan(50);
    }
    const { error, ms } = refused(() => formatDeep({ a: '{x}' }, { x: { k: big } }));
    expect(error.message).toMatch(/^what the step publishes would be more than 1,048,576 characters long/);
    expect(ms).toBeLessThan(50);
    // a million short items: rendered up to the limit only
    for (const value of [Array.from({ length: 1_000_000 }, () => 'ab'), { k: Array.from({ length: 1_000_000 }, () => 'ab') }])
      expect(refused(() => formatTemplate('{x}', { x: value })).error.message).toMatch(/^it would be more than 1,048,576 characters long/);
    // just under the limit still renders
    expect(formatTemplate('{x}', { x: { k: 'y'.repeat(1000) } }).length).toBe(1000 + 9);
  });
});
