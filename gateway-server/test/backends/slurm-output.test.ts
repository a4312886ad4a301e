// Reading the Slurm tools' output: sbatch's job id, the lines of one squeue (a fixed format behind a
// per-query marker), and what each state and pending reason means for the engine and the user.
// The lines below are what Slurm 22.05 (Debian 12) printed for these jobs.
import { describe, expect, it } from 'vitest';
import { parseSbatch, parseSqueue, pendingReason, slurmJobState, squeueFormat, type SlurmJob } from '../../src/backends/slurm/slurm-output.js';

const M = 'a1b2c3d4e5f6a1b2c3d4e5f6';

describe('sbatch output', () => {
  it('reads the job id of --parsable (with or without a cluster) and of the plain message', () => {
    expect(parseSbatch('1234\n')).toBe(1234);
    expect(parseSbatch('1234;af0123456789\n')).toBe(1234);
    expect(parseSbatch('Submitted batch job 77\n')).toBe(77);
    expect(parseSbatch('sbatch: warning: something\n88\n')).toBe(88);
  });

  it('fails with what sbatch printed when there is no id', () => {
    expect(() => parseSbatch('')).toThrow('sbatch printed no job id: (nothing)');
    expect(() => parseSbatch('sbatch: error: Batch job submission failed\n')).toThrow(/no job id: sbatch: error/);
    expect(() => parseSbatch('0\n')).toThrow(/no job id/);
  });
});

describe('squeue lines', () => {
  const line = (fields: string[]) => [M, ...fields].join('|');
  const text = [
    line([
      '12_0',
      '12',
      'af-alice',
      'RUNNING',
      'None',
      '2026-12-07T04:09:23',
      '2026-12-07T04:09:24',
      'vm',
      'af-gateway-0123456789ab.w.c0ffee',
      'af-owner:YWxpY2U',
    ]),
    line([
      '12_1',
      '12',
      'af-alice',
      'PENDING',
      'Resources',
      '2026-12-07T04:09:23',
      '2027-12-07T04:09:23',
      'n/a',
      'af-gateway-0123456789ab.w.c0ffee',
      'af-owner:YWxpY2U',
    ]),
    line(['13', '13', 'af-bob', 'PENDING', 'PartitionConfig', '2026-12-07T04:09:25', 'N/A', 'n/a', 'af-gateway-0123456789ab.s.beef', '(null)']),
    // mallory's job: a | in its name and a line break in its comment, forging a line of alice's job 12_0
    line(['14', '14', 'af-mallory', 'RUNNING', 'None', 'N/A', 'N/A', 'vm', 'x|y|z', 'c\n12_0|12|af-alice|FAILED|None|||vm|n|c']),
    line(['14', '14', 'af-mallory', 'FAILED', 'None', 'N/A', 'N/A', 'vm', 'again', 'c']),
    'squeue: error: a warning line',
    line(['garbage']),
    '',
  ].join('\n');

  it('reads every field of the lines that carry the marker', () => {
    const jobs = parseSqueue(text, M);
    expect([...jobs.keys()]).toEqual(['12_0', '12_1', '13']); // (14: two lines)
    expect(jobs.get('12_0')).toEqual({
      id: '12_0',
      arrayJob: '12',
      user: 'af-alice',
      state: 'RUNNING',
      reason: '',
      submitted: Date.UTC(2026, 11, 7, 4, 9, 23),
      started: Date.UTC(2026, 11, 7, 4, 9, 24),
      node: 'vm',
      name: 'af-gateway-0123456789ab.w.c0ffee',
      comment: 'af-owner:YWxpY2U',
    } satisfies SlurmJob);
    expect(jobs.get('12_1')).toMatchObject({ state: 'PENDING', reason: 'Resources', node: null });
    expect(jobs.get('13')).toMatchObject({ started: null, comment: '' });
  });

  it('takes nothing from a line without the marker: a job name or comment cannot forge another job', () => {
    const jobs = parseSqueue(text, M);
    expect(jobs.get('12_0')!.state).toBe('RUNNING');
    // the ids, user and state before the free text stay in place
    expect(jobs.get('13')).toMatchObject({ user: 'af-bob', state: 'PENDING' });
    expect(parseSqueue(text, 'ffffffffffffffffffffffff').size).toBe(0);
  });

  it("believes no line of an id printed twice: a comment that knows the marker (it is on squeue's command line) can forge a line before the real one", () => {
    const forged = [
      line(['15', '15', 'af-mallory', 'RUNNING', 'None', 'N/A', 'N/A', 'vm', 'n', `c\n${M}|12_0|12|af-alice|FAILED|None|N/A|N/A|vm|n|c`]),
      text,
    ].join('\n');
    const jobs = parseSqueue(forged, M);
    expect(jobs.has('12_0')).toBe(false);
    expect(jobs.has('14')).toBe(false); // mallory's own forgery of her job 14 (two lines)
    expect([...jobs.keys()]).toEqual(['15', '12_1', '13']);
  });

  it('without the text fields reads lines of exactly the fixed fields', () => {
    const plain = [
      line(['12_0', '12', 'af-alice', 'RUNNING', 'None', 'N/A', 'N/A', 'vm']),
      line(['13', '13', 'af-bob', 'PENDING', 'Resources', 'N/A', 'N/A', 'n/a', 'x']),
    ].join('\n');
    const jobs = parseSqueue(plain, M, false);
    expect([...jobs.keys()]).toEqual(['12_0']);
    expect(jobs.get('12_0')).toMatchObject({ state: 'RUNNING', node: 'vm', name: '', comment: '' });
  });

  it('builds the format from the marker and the fixed fields (the text fields only when asked for)', () => {
    expect(squeueFormat(M)).toBe(`${M}|%i|%F|%u|%T|%r|%V|%S|%B|%j|%k`);
    expect(squeueFormat(M, false)).toBe(`${M}|%i|%F|%u|%T|%r|%V|%S|%B`);
    expect(() => squeueFormat('a|b')).toThrow();
  });
});

describe('job states', () => {
  const job = (over: Partial<SlurmJob>): SlurmJob => ({
    id: '12_1',
    arrayJob: '12',
    user: 'af-alice',
    state: 'PENDING',
    reason: '',
    submitted: 1_000_000,
    started: null,
    node: null,
    name: 'n',
    comment: '',
    ...over,
  });

  it('keeps a pending job alive and says for how long and why (the engine does not count it against the start timeout)', () => {
    expect(slurmJobState(job({ reason: 'Resources' }), '12_1', 1_042_000)).toEqual({
      alive: true,
      waiting: 'Slurm job 12_1 is pending for 42 s: Resources (no node has the CPUs and memory it asks for free yet)',
    });
    expect(slurmJobState(job({ reason: 'PartitionConfig' }), '12_1', 1_000_000).waiting).toContain(
      "PartitionConfig (it asks for more than the partition's nodes have (CPUs, memory, GPUs))",
    );
  });

  it('names the pending reasons a facility user meets, and passes unknown ones on as Slurm wrote them', () => {
    expect(pendingReason('Priority')).toMatch(/higher priority/);
    expect(pendingReason('ReqNodeNotAvail, UnavailableNodes:vm')).toMatch(/down, drained or reserved/);
    expect(pendingReason('Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions')).toMatch(/down, drained or reserved/);
    expect(pendingReason('QOSMaxJobsPerUserLimit')).toBe("QOSMaxJobsPerUserLimit (the QOS's limit of running jobs per user is reached)");
    expect(pendingReason('QOSMaxCpuPerUserLimit')).toMatch(/per-user limit of resources/);
    expect(pendingReason('QOSGrpCpuLimit')).toMatch(/all its jobs together/);
    expect(pendingReason('AssocGrpCPUMinutesLimit')).toMatch(/association/);
    expect(pendingReason('PartitionTimeLimit')).toMatch(/time limit is longer/);
    expect(pendingReason('JobHeldAdmin')).toMatch(/administrator held/);
    expect(pendingReason('SomethingNew')).toBe('SomethingNew');
    expect(pendingReason('')).toMatch(/not looked at it yet/);
    expect(pendingReason('x'.repeat(1000))).toHaveLength(200);
  });

  it('reports a running job alive since its start; a suspended one alive but waiting', () => {
    expect(slurmJobState(job({ state: 'RUNNING', started: 5000 }), '12_1', 9000)).toEqual({ alive: true, startedAt: 5000 });
    expect(slurmJobState(job({ state: 'SUSPENDED' }), '12_1', 0)).toEqual({ alive: true, waiting: 'Slurm job 12_1 is not running: it is suspended' });
    expect(slurmJobState(job({ state: 'CONFIGURING' }), '12_1', 0).alive).toBe(true);
  });

  it('ends the worker of a failed, timed-out, node-failed, out-of-memory or cancelled job, saying how', () => {
    const ended = (state: string, reason = '') => slurmJobState(job({ state, reason }), '12_1', 0);
    expect(ended('FAILED', 'NonZeroExitCode')).toEqual({ alive: false, detail: 'Slurm job 12_1 failed (NonZeroExitCode)' });
    expect(ended('TIMEOUT', 'TimeLimit')).toEqual({ alive: false, detail: 'Slurm job 12_1 reached its time limit (TimeLimit)' });
    expect(ended('NODE_FAIL')).toEqual({ alive: false, detail: 'Slurm job 12_1 ended because its node failed' });
    expect(ended('OUT_OF_MEMORY')).toEqual({ alive: false, detail: 'Slurm job 12_1 ran out of memory' });
    expect(ended('CANCELLED')).toEqual({ alive: false, detail: 'Slurm job 12_1 was cancelled' });
    expect(ended('PREEMPTED').alive).toBe(false);
    expect(ended('BOOT_FAIL').alive).toBe(false);
    expect(ended('COMPLETING').alive).toBe(false);
    expect(ended('COMPLETED', 'None')).toEqual({ alive: false, detail: 'Slurm job 12_1 finished' });
    expect(ended('SOMETHING_ELSE')).toEqual({ alive: false, detail: 'Slurm job 12_1 is in state SOMETHING_ELSE' });
  });

  it('reports a job squeue no longer lists as gone', () => {
    expect(slurmJobState(undefined, '99_3', 0)).toEqual({ alive: false, detail: 'Slurm job 99_3 is no longer in the queue' });
  });
});
