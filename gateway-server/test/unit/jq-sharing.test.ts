// The jq workers are shared by every user (src/workflows/jq.ts): one user's slow filters must not
// make another's wait for them, nor have theirs refused. Calls name their owner; owners are served in
// turn, one owner's calls hold one worker at most, each owner's line is bounded on its own, and a
// budget bounds the jq time a piece of work (a submission's scripts) spends in all.
import { describe, expect, it } from 'vitest';
import { jq, jqProblem, JqError, JQ_LIMITS } from '../../src/workflows/jq.js';

/** A filter that keeps a worker busy about `ms` milliseconds (a loop bounded by the call's own limit). */
const busyFor = (ms: number) => `now as $t0 | until(now - $t0 >= ${ms / 1000}; .) | 1`;

async function settle(p: Promise<unknown>): Promise<{ ok: boolean; value?: unknown; error?: InstanceType<typeof JqError>; at: number }> {
  const t0 = performance.now();
  try {
    return { ok: true, value: await p, at: performance.now() - t0 };
  } catch (e) {
    expect(e).toBeInstanceOf(JqError);
    return { ok: false, error: e as InstanceType<typeof JqError>, at: performance.now() - t0 };
  }
}

describe('sharing the jq workers between users', () => {
  it('runs bob’s call at once while mallory has a dozen slow ones queued', async () => {
    await jq('.', null); // workers started
    const started = performance.now();
    const hers = Array.from({ length: 12 }, () => settle(jq(busyFor(600), null, { owner: 'mallory' })));
    await new Promise((r) => setTimeout(r, 50));
    const bob = await settle(jq('.x + 1', { x: 1 }, { owner: 'bob' }));
    expect(bob).toMatchObject({ ok: true, value: [2] });
    // Before: his call waited for the 12 × 0.6 s ahead of it, two at a time (3.6 s).
    expect(bob.at).toBeLessThan(1_000);
    const done = await Promise.all(hers);
    expect(done.map((d) => d.value)).toEqual(done.map(() => [1]));
    // hers ran one at a time (one worker is left for the others)
    expect(performance.now() - started).toBeGreaterThanOrEqual(12 * 600);
  }, 30_000);

  it('gives a free worker to the owner served longest ago', async () => {
    const order: string[] = [];
    const call = (owner: string, i: number) => jq(busyFor(150), null, { owner }).then(() => order.push(`${owner}${i}`));
    const all = [...Array.from({ length: 4 }, (_, i) => call('mallory', i)), ...Array.from({ length: 2 }, (_, i) => call('eve', i)), call('bob', 0)];
    await Promise.all(all);
    // mallory's first four queued first, yet eve and bob each get a turn before her last ones
    expect(order.indexOf('bob0')).toBeLessThan(order.indexOf('mallory2'));
    expect(order.indexOf('eve1')).toBeLessThan(order.indexOf('mallory3'));
  }, 30_000);

  it('refuses an owner’s calls past their own share of the line, while other users’ run', async () => {
    const big = 'x'.repeat(6 * 1024 * 1024); // 6 MiB: three waiting pass her 16 MiB
    const hers = await Promise.all(Array.from({ length: 5 }, () => settle(jq('length', big, { owner: 'mallory', timeoutMs: 10_000 }))));
    const refused = hers.filter((h) => !h.ok);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]!.error!.kind).toBe('busy');
    expect(refused[0]!.error!.message).toMatch(
      /^jq filter 'length' was not run: mallory has \d jq filters \(\d+\.\d MiB of input\) waiting already; try again later$/,
    );
    expect(hers.filter((h) => h.ok).map((h) => h.value)).toEqual(hers.filter((h) => h.ok).map(() => [big.length]));
    expect(JQ_LIMITS.queuedBytesPerOwner).toBe(16 * 1024 * 1024);

    // her line full of calls: bob's still runs
    const many = Array.from({ length: JQ_LIMITS.queuedPerOwner + 5 }, () => settle(jq('.', 1, { owner: 'mallory' })));
    const bob = await settle(jq('2', null, { owner: 'bob' }));
    expect(bob).toMatchObject({ ok: true, value: [2] });
    const results = await Promise.all(many);
    const busy = results.filter((r) => !r.ok).map((r) => r.error!.kind);
    expect(busy.length).toBeGreaterThanOrEqual(4); // (her first may have started at once)
    expect(busy).toEqual(busy.map(() => 'busy'));
  }, 60_000);

  it('stops the calls of a piece of work once its budget of jq time is spent', async () => {
    const budget = { ms: 500 };
    const first = await settle(jqProblem(busyFor(3_000), { owner: 'mallory', budget })); // compiles quickly: runs nothing
    expect(first).toMatchObject({ ok: true, value: null });
    const slow = await settle(jq(busyFor(3_000), null, { owner: 'mallory', budget }));
    expect(slow.error?.kind).toBe('budget');
    expect(slow.error?.message).toMatch(/^jq filter '.*' was stopped: the jq time of the work it is part of ran out$/);
    expect(slow.at).toBeLessThan(1_200);
    expect(budget.ms).toBeLessThanOrEqual(0);
    const next = await settle(jqProblem('.', { owner: 'mallory', budget }));
    expect(next.error?.kind).toBe('budget');
    expect(await jq('1', null, { owner: 'mallory' })).toEqual([1]); // her other work is not affected
  }, 30_000);
});
