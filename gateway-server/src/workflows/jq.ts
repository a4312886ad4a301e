// jq for workflows (cases conditions, jq-stage, fromparjq-pub publishers, par_mounts jqscripts): jq 1.7
// compiled to WebAssembly (the jq-wasm package), run in worker threads, never on the event loop.
//
// Why not jq-wasm's own raw(): it feeds stdin and collects stdout one byte at a time into a new array
// each time (measured: 100 KB in or out took 0.5 s, 400 KB took 9 s, so the 8 MiB limits would be a
// time-out), it reuses one jq instance whose C library state a `halt_error` leaves broken (every later
// call printed nothing), and it ignores jq's exit status. So the worker compiles the build's WebAssembly
// once and gives every call a fresh instance (nothing of one user's call reaches another's) whose
// stdin/stdout/stderr writes (the WASI fd_read/fd_write imports) are served here in bulk.
//
// What a filter can reach: jq's files are the instance's in-memory file system (no /etc, no modules),
// its environment is Emscripten's stand-in (USER=web_user, HOME=/home/web_user, `_`=jq), and the worker
// itself starts with an empty process.env. Bounds: a time limit per call (the worker is terminated and
// replaced), 8 MiB of JSON in and out, the build's 256 MB WebAssembly memory and a capped worker heap.
//
// The workers are shared by every user: a call names its owner (the user whose workflow asked), each
// owner's calls wait in their own line, a free worker takes the call of the owner served longest ago,
// and one owner's calls hold at most JQ_LIMITS.workersPerOwner workers at once, so another user's call
// finds a worker free (or is next) however many slow filters one user queues. A budget bounds the jq time a piece of work (the
// scripts of one submission) may use in all.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { MessagePort } from 'node:worker_threads';

const MiB = 1024 * 1024;

/** The bounds every evaluation runs within (the docs quote them: docs/workflows.md, "jq"). */
export const JQ_LIMITS = {
  /** Default time limit of one call, from the moment a worker takes it. */
  timeoutMs: 2_000,
  /** The input, as UTF-8 JSON. */
  inputBytes: 8 * MiB,
  /** What the filter prints (compact JSON, one output a line). */
  outputBytes: 8 * MiB,
  /** A filter's length; yadage's filters are one-liners. */
  filterChars: 64 * 1024,
  /** jq-wasm's build cannot grow its memory beyond this (a filter that needs more fails). */
  wasmMemoryMb: 256,
  /** Each worker's JavaScript heap (the parsed outputs live there). */
  workerHeapMb: 256,
  /** Worker threads evaluating filters at once. */
  workers: 2,
  /** Workers one owner's calls hold at once (the others are left for other users). */
  workersPerOwner: 1,
  /** Calls waiting for a worker, and their inputs' size together; beyond either a call is refused. */
  queued: 10_000,
  queuedBytes: 64 * MiB,
  /** The same for one owner's calls (so that no user alone fills the line and has the others' refused). */
  queuedPerOwner: 1_000,
  queuedBytesPerOwner: 16 * MiB,
} as const;

/** How a call is run: its time limit, whose it is (calls are served owner by owner, in turn), and the budget it spends. */
export interface JqOptions {
  /** Time limit of this call (default JQ_LIMITS.timeoutMs). */
  timeoutMs?: number;
  /** The user whose work this is; calls naming no owner are the gateway's own (tests, tools). */
  owner?: string;
  /** Milliseconds of jq time left to the work this call is part of; the call spends what it takes, and is stopped when none is left. */
  budget?: JqBudget;
}

/** jq time (milliseconds in a worker) a piece of work may still use; shared by its calls. */
export interface JqBudget {
  ms: number;
}

/**
 * Why a filter failed: its author can act on all but 'crash' and 'busy'. 'trap': jq's WebAssembly
 * itself stopped on the filter (its compiler trips over some filters: an assertion, memory out of bounds).
 */
export type JqErrorKind = 'compile' | 'runtime' | 'timeout' | 'input' | 'output' | 'memory' | 'no-output' | 'filter' | 'busy' | 'crash' | 'trap' | 'budget';

/** A filter that could not give its outputs; the message names the filter (shortened) and says why in jq's words. */
export class JqError extends Error {
  override readonly name = 'JqError';
  constructor(
    message: string,
    /** The filter, whole. */
    readonly filter: string,
    readonly kind: JqErrorKind,
    /** Why, without the filter: jq's own text for 'compile' and 'runtime'. */
    readonly detail: string,
  ) {
    super(message);
  }
}

/** The filter as a message quotes it: one line, at most 80 characters. */
function shortFilter(filter: string): string {
  const line = filter.replace(/\s+/g, ' ').trim();
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

function jqError(filter: string, kind: JqErrorKind, detail: string): JqError {
  const f = `jq filter '${shortFilter(filter)}'`;
  const message: Record<JqErrorKind, string> = {
    compile: `${f} does not compile: ${detail}`,
    runtime: `${f} failed: ${detail}`,
    timeout: `${f} ${detail}`,
    input: `The input of ${f} ${detail}`,
    output: `${f} ${detail}`,
    memory: `${f} ${detail}`,
    'no-output': `${f} ${detail}`,
    filter: `${f} ${detail}`,
    busy: `${f} was not run: ${detail}`,
    crash: `${f} could not be evaluated: ${detail}`,
    trap: `${f} could not be evaluated: jq stopped on it (${detail})`,
    budget: `${f} was stopped: ${detail}`,
  };
  return new JqError(message[kind], filter, kind, detail);
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))} s`;

/** What the worker answers for one call. */
type Outcome =
  | { ok: true; values: unknown[] }
  | { ok: false; exit: number; stderr: string }
  | { ok: false; fail: 'output' | 'memory' | 'not-json' | 'crash' | 'trap'; message: string };
type Reply = { id: number } & Outcome;

// ---- The worker. Self-contained (it gets this function's source text); its modules come as arguments.

function jqWorker(
  port: MessagePort,
  factory: (moduleArg: object) => Promise<{ callMain(args: string[]): number }>,
  wasmBytes: BufferSource,
  outputLimit: number,
): void {
  type WasiFn = (fd: number, iov: number, iovcnt: number, pnum: number) => number;
  type Job = { id: number; filter: string; input: string };
  /** Thrown out of jq (through its fd_write) when it prints more than outputLimit: nothing else stops a filter mid-run. */
  class OutputTooLarge extends Error {}

  const wasm = new WebAssembly.Module(wasmBytes);

  async function run(job: Job): Promise<Outcome> {
    const input = Buffer.from(job.input, 'utf8');
    let inPos = 0;
    let out = new Uint8Array(64 * 1024);
    let outLen = 0;
    // stderr: a compile error's first lines (jq echoes the whole filter after them) and a runtime error's
    // last; `debug` output in between may be long, and stderr is unbuffered (a write per few bytes).
    const errHead = new Uint8Array(16 * 1024);
    let errHeadLen = 0;
    const errTail = new Uint8Array(48 * 1024); // a ring: byte i of the tail part is at i % length
    let errTailLen = 0;
    const errWrite = (bytes: Uint8Array) => {
      const toHead = Math.min(bytes.length, errHead.length - errHeadLen);
      errHead.set(bytes.subarray(0, toHead), errHeadLen);
      errHeadLen += toHead;
      let rest = bytes.subarray(toHead);
      if (rest.length > errTail.length) {
        errTailLen += rest.length - errTail.length;
        rest = rest.subarray(rest.length - errTail.length);
      }
      const at = errTailLen % errTail.length;
      const first = Math.min(rest.length, errTail.length - at);
      errTail.set(rest.subarray(0, first), at);
      errTail.set(rest.subarray(first), 0);
      errTailLen += rest.length;
    };
    const stderr = () => {
      const at = errTailLen % errTail.length;
      const tail = errTailLen <= errTail.length ? [errTail.subarray(0, errTailLen)] : [errTail.subarray(at), errTail.subarray(0, at)];
      return Buffer.concat([errHead.subarray(0, errHeadLen), ...tail]).toString('utf8');
    };
    let memory: WebAssembly.Memory | undefined;
    let view = new DataView(new ArrayBuffer(0));
    const mem = () => {
      if (view.buffer !== memory!.buffer) view = new DataView(memory!.buffer);
      return view;
    };
    // The WASI calls jq's stdio makes, for fd 0 (stdin: the input), 1 (stdout: the outputs) and 2 (stderr:
    // errors, `debug`; its first 16 KiB and last 48 KiB are kept). Other descriptors go to the build's own file system.
    const fdRead =
      (orig: WasiFn): WasiFn =>
      (fd, iov, iovcnt, pnum) => {
        if (fd !== 0) return orig(fd, iov, iovcnt, pnum);
        let n = 0;
        for (let i = 0; i < iovcnt; i++) {
          const ptr = mem().getUint32(iov + i * 8, true);
          const len = mem().getUint32(iov + i * 8 + 4, true);
          const take = Math.min(len, input.length - inPos);
          new Uint8Array(memory!.buffer, ptr, take).set(input.subarray(inPos, inPos + take));
          inPos += take;
          n += take;
          if (take < len) break;
        }
        mem().setUint32(pnum, n, true);
        return 0;
      };
    const fdWrite =
      (orig: WasiFn): WasiFn =>
      (fd, iov, iovcnt, pnum) => {
        if (fd !== 1 && fd !== 2) return orig(fd, iov, iovcnt, pnum);
        let n = 0;
        for (let i = 0; i < iovcnt; i++) {
          const ptr = mem().getUint32(iov + i * 8, true);
          const len = mem().getUint32(iov + i * 8 + 4, true);
          const bytes = new Uint8Array(memory!.buffer, ptr, len);
          n += len;
          if (fd === 1) {
            if (outLen + len > outputLimit) throw new OutputTooLarge();
            if (outLen + len > out.length) {
              const bigger = new Uint8Array(Math.min(outputLimit, Math.max(out.length * 2, outLen + len)));
              bigger.set(out.subarray(0, outLen));
              out = bigger;
            }
            out.set(bytes, outLen);
            outLen += len;
          } else errWrite(bytes);
        }
        mem().setUint32(pnum, n, true);
        return 0;
      };

    let jq: { callMain(args: string[]): number };
    try {
      jq = await factory({
        thisProgram: 'jq',
        instantiateWasm(imports: Record<string, Record<string, unknown>>, receive: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void) {
          const hooked: Record<string, Record<string, unknown>> = {};
          let found = 0;
          for (const [ns, fns] of Object.entries(imports)) {
            const mine: Record<string, unknown> = { ...fns };
            for (const [name, fn] of Object.entries(fns)) {
              // Emscripten names its import functions after the WASI calls they serve.
              const hook = typeof fn !== 'function' ? null : fn.name === '_fd_read' ? fdRead : fn.name === '_fd_write' ? fdWrite : null;
              if (!hook) continue;
              mine[name] = hook(fn as WasiFn);
              found++;
            }
            hooked[ns] = mine;
          }
          if (found !== 2) throw new Error("jq-wasm's build changed: its fd_read/fd_write imports were not found");
          const instance = new WebAssembly.Instance(wasm, hooked as WebAssembly.Imports);
          memory = Object.values(instance.exports).find((e): e is WebAssembly.Memory => e instanceof WebAssembly.Memory);
          receive(instance, wasm);
          return instance.exports;
        },
      });
    } catch (e) {
      return { ok: false, fail: 'crash', message: String(e) };
    }
    let exit: number;
    try {
      // `--` so that a filter starting with '-' (`-1`) is not taken for an option.
      exit = jq.callMain(['-c', '--', job.filter]);
    } catch (e) {
      if (e instanceof OutputTooLarge) return { ok: false, fail: 'output', message: '' };
      // The build aborts when malloc fails at its memory's limit (jq printed "cannot allocate memory").
      if (/cannot allocate memory/.test(stderr())) return { ok: false, fail: 'memory', message: String(e) };
      // Anything else jq's WebAssembly stopped on is the filter's doing (an assertion, memory out of bounds).
      return { ok: false, fail: 'trap', message: String(e) };
    }
    if (exit !== 0) return { ok: false, exit, stderr: stderr() };
    const text = new TextDecoder().decode(out.subarray(0, outLen));
    const values: unknown[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        values.push(JSON.parse(line));
      } catch {
        // jq prints `<skipped: too deep>` for values nested deeper than it prints.
        return { ok: false, fail: 'not-json', message: line.includes('<skipped: too deep>') ? 'nested too deep' : line.slice(0, 100) };
      }
    }
    return { ok: true, values };
  }

  port.on('message', (job: Job) => {
    void run(job).then(
      (reply) => port.postMessage({ id: job.id, ...reply }),
      (e: unknown) => port.postMessage({ id: job.id, ok: false, fail: 'crash', message: String(e) }),
    );
  });
  port.postMessage({ ready: true });
}

// jq-wasm's CommonJS module (resolved from here, so this works from src/ and from dist/) and its build.
const jqFile = join(dirname(createRequire(import.meta.url).resolve('jq-wasm')), 'build', 'jq.js');
const workerSource = `
'use strict';
for (const k of Object.keys(process.env)) delete process.env[k];
// The build prints its aborts on the console; the reply says what happened.
for (const k of ['log', 'info', 'warn', 'error', 'debug']) console[k] = () => {};
const { parentPort, workerData } = require('node:worker_threads');
const factory = require(workerData.jqFile);
const wasm = /data:application\\/octet-stream;base64,([A-Za-z0-9+/=]+)/.exec(require('node:fs').readFileSync(workerData.jqFile, 'utf8'));
if (!wasm) throw new Error("jq-wasm's build changed: its WebAssembly was not found in " + workerData.jqFile);
(${jqWorker.toString()})(parentPort, factory, Buffer.from(wasm[1], 'base64'), workerData.outputLimit);
`;

// ---- The pool, on the gateway's side.

type Call = {
  id: number;
  filter: string;
  input: string;
  timeoutMs: number;
  owner: string;
  budget?: JqBudget;
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
};

/** A worker compiles jq's WebAssembly (milliseconds) before it takes calls; this long means it never will. */
const STARTUP_MS = 20_000;
/** The gateway's own calls (no owner): not held to one owner's share. */
const GATEWAY = '';
/** Each owner's waiting calls, running count, and when a call of theirs last started (a count of starts). */
const owners = new Map<string, { calls: Call[]; chars: number; running: number; served: number }>();
let starts = 0;
let queuedCalls = 0;
let queuedChars = 0;
const threads = new Set<JqThread>();
let nextId = 1;

const BUDGET_SPENT = 'the jq time of the work it is part of ran out';
const budgetSpent = (call: Call) => jqError(call.filter, 'budget', BUDGET_SPENT);

/** The next call to run: that of the owner served longest ago (a newcomer first) among those with calls waiting and a worker to spare. */
function nextCall(): Call | undefined {
  let next: { calls: Call[]; chars: number; running: number; served: number } | undefined;
  for (const [name, o] of owners) {
    if (!o.calls.length || (name !== GATEWAY && o.running >= JQ_LIMITS.workersPerOwner)) continue;
    if (!next || o.served < next.served) next = o;
  }
  if (!next) return undefined;
  const call = next.calls.shift()!;
  next.chars -= call.input.length;
  queuedCalls--;
  queuedChars -= call.input.length;
  next.running++;
  next.served = ++starts;
  return call;
}

/** A call left its worker (answered, stopped, failed): its owner may run another. */
function released(call: Call): void {
  const o = owners.get(call.owner);
  if (!o) return;
  o.running--;
  if (!o.running && !o.calls.length) owners.delete(call.owner);
}

class JqThread {
  private readonly worker: Worker;
  ready = false;
  private call: Call | null = null;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private gone = false;

  constructor() {
    this.worker = new Worker(workerSource, {
      eval: true,
      workerData: { jqFile, outputLimit: JQ_LIMITS.outputBytes },
      env: {},
      resourceLimits: { maxOldGenerationSizeMb: JQ_LIMITS.workerHeapMb, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
    });
    this.worker.unref(); // an idle worker does not keep the gateway alive; a call in flight does (ref below)
    const startup = setTimeout(() => this.die(new Error(`it did not start within ${seconds(STARTUP_MS)}`)), STARTUP_MS).unref();
    this.worker.on('message', (m: Reply | { ready: true }) => {
      if ('ready' in m) {
        clearTimeout(startup);
        this.ready = true;
        pump();
        return;
      }
      const call = this.call;
      if (!call || call.id !== m.id) return;
      this.settle();
      call.resolve(m);
      pump();
    });
    this.worker.on('error', (e) => this.die(e));
    this.worker.on('exit', (code) => {
      clearTimeout(startup);
      this.die(new Error(`the jq worker stopped (exit code ${code})`));
    });
  }

  get idle(): boolean {
    return this.ready && !this.call && !this.gone;
  }

  start(call: Call): void {
    // A budget other calls of the same work used up meanwhile: this one does not run.
    const limit = Math.min(call.timeoutMs, call.budget?.ms ?? Infinity);
    if (!(limit > 0)) {
      released(call);
      call.reject(budgetSpent(call));
      return;
    }
    this.call = call;
    this.startedAt = performance.now();
    this.worker.ref();
    this.timer = setTimeout(() => {
      this.die(null);
      const outOfBudget = limit < call.timeoutMs;
      // spent, whatever the clock measured: a timer may fire a fraction of a millisecond before performance.now() says the limit passed
      if (outOfBudget && call.budget) call.budget.ms = Math.min(call.budget.ms, 0);
      call.reject(outOfBudget ? budgetSpent(call) : jqError(call.filter, 'timeout', `took longer than ${seconds(call.timeoutMs)} and was stopped`));
    }, limit);
    this.worker.postMessage({ id: call.id, filter: call.filter, input: call.input });
  }

  private settle(): void {
    clearTimeout(this.timer);
    const call = this.call;
    this.call = null;
    if (call) {
      if (call.budget) call.budget.ms -= performance.now() - this.startedAt;
      released(call);
    }
    if (!this.gone) this.worker.unref();
  }

  /** The worker is finished with (a time-out, a crash, its heap cap): its call fails, queued calls go to a new one. */
  private die(e: Error | null): void {
    if (this.gone) return;
    this.gone = true;
    threads.delete(this);
    const call = this.call;
    this.settle();
    void this.worker.terminate();
    if (e && call) {
      const heap = (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
      call.reject(
        heap
          ? jqError(call.filter, 'memory', `needed more than ${JQ_LIMITS.workerHeapMb} MB of memory for its outputs`)
          : jqError(call.filter, 'crash', e.message),
      );
    }
    if (e && !this.ready) {
      // It never started (the build is missing or changed): every waiting call would meet the same.
      const waiting = [...owners.values()].flatMap((o) => o.calls.splice(0));
      for (const [name, o] of owners) if (!o.running) owners.delete(name);
      queuedCalls = 0;
      queuedChars = 0;
      for (const w of waiting) w.reject(jqError(w.filter, 'crash', `the jq worker did not start: ${e.message}`));
    }
    pump();
  }
}

/** Hands waiting calls to idle workers owner by owner, starting one (up to JQ_LIMITS.workers) when all are busy. */
function pump(): void {
  while (queuedCalls) {
    const idle = [...threads].find((t) => t.idle);
    if (idle) {
      const call = nextCall();
      if (!call) return; // the owners waiting hold their share of workers already
      idle.start(call);
      continue;
    }
    const starting = [...threads].some((t) => !t.ready);
    if (!starting && threads.size < JQ_LIMITS.workers) threads.add(new JqThread());
    return;
  }
}

function evaluate(filter: string, input: string, timeoutMs: number, owner = GATEWAY, budget?: JqBudget): Promise<Reply> {
  const waiting = (calls: number, chars: number) => `${calls.toLocaleString('en')} jq filters (${mib(chars)} of input)`;
  if (queuedCalls >= JQ_LIMITS.queued || (queuedCalls && queuedChars + input.length > JQ_LIMITS.queuedBytes)) {
    return Promise.reject(jqError(filter, 'busy', `the gateway has ${waiting(queuedCalls, queuedChars)} waiting already; try again later`));
  }
  const o = owners.get(owner) ?? { calls: [], chars: 0, running: 0, served: 0 };
  if (owner !== GATEWAY && (o.calls.length >= JQ_LIMITS.queuedPerOwner || (o.calls.length && o.chars + input.length > JQ_LIMITS.queuedBytesPerOwner))) {
    return Promise.reject(jqError(filter, 'busy', `${owner} has ${waiting(o.calls.length, o.chars)} waiting already; try again later`));
  }
  if (budget && !(budget.ms > 0)) return Promise.reject(jqError(filter, 'budget', BUDGET_SPENT));
  return new Promise((resolve, reject) => {
    o.calls.push({ id: nextId++, filter, input, timeoutMs, owner, budget, resolve, reject });
    o.chars += input.length;
    owners.set(owner, o);
    queuedCalls++;
    queuedChars += input.length;
    pump();
  });
}

// ---- What jq printed on stderr, as an author reads it.

/** jq's message for a failed run: its own words, without the command line's decoration. */
function describeExit(exit: number, stderr: string): { kind: 'compile' | 'runtime'; detail: string } {
  const text = stderr
    .split('\n')
    .filter((line) => !line.startsWith('["DEBUG:",'))
    .join('\n');
  const clip = (s: string) => (s.length > 1000 ? `${s.slice(0, 999)}…` : s);
  if (/^jq: \d+ compile errors?$/m.test(text)) {
    const errors = [...text.matchAll(/^jq: error: (.*)$/gm)].map((m) => m[1]!.replace(' (Unix shell quoting issues?)', '').replace(/:$/, ''));
    return { kind: 'compile', detail: clip(errors.length ? errors.join('; ') : text.trim()) };
  }
  // A runtime error is the last "jq: error (at <stdin>:0): …" (an error's own text may span lines).
  const errorLines = [...text.matchAll(/^jq: error \(at [^)\n]*\)( \(not a string\))?: /gm)];
  const last = errorLines.at(-1);
  if (last) return { kind: 'runtime', detail: clip(text.slice(last.index + last[0].length).trim()) };
  const rest = text.trim().replace(/^jq: /, '');
  // halt_error: the filter's own message and exit status.
  return { kind: 'runtime', detail: clip(rest ? `${rest} (exit status ${exit})` : `jq stopped with exit status ${exit}`) };
}

function replyError(filter: string, reply: Reply): JqError | null {
  if (reply.ok) return null;
  if ('exit' in reply) {
    const { kind, detail } = describeExit(reply.exit, reply.stderr);
    return jqError(filter, kind, detail);
  }
  switch (reply.fail) {
    case 'output':
      return jqError(filter, 'output', `printed more than ${mib(JQ_LIMITS.outputBytes)} of JSON; outputs are bounded`);
    case 'memory':
      return jqError(filter, 'memory', `needed more than ${JQ_LIMITS.wasmMemoryMb} MB of memory`);
    case 'not-json':
      return jqError(
        filter,
        'runtime',
        reply.message === 'nested too deep' ? 'an output nests deeper than jq prints (256 levels)' : `jq printed something that is not JSON: ${reply.message}`,
      );
    case 'trap':
      // its first line, printable (an assertion's text may hold bytes of jq's memory)
      return jqError(
        filter,
        'trap',
        reply.message
          .split('\n', 1)[0]!
          .replace(/[^\x20-\x7e]/g, '?')
          .slice(0, 200),
      );
    default:
      return jqError(filter, 'crash', reply.message);
  }
}

function checkFilter(filter: string): void {
  if (typeof filter !== 'string') throw new TypeError('a jq filter is a string');
  if (filter.length > JQ_LIMITS.filterChars) {
    throw jqError(filter, 'filter', `is ${filter.length.toLocaleString('en')} characters long; at most ${JQ_LIMITS.filterChars.toLocaleString('en')}`);
  }
}

function timeLimit(opts?: JqOptions): number {
  const ms = opts?.timeoutMs ?? JQ_LIMITS.timeoutMs;
  if (!(ms > 0) || !Number.isFinite(ms)) throw new TypeError(`timeoutMs must be a positive number of milliseconds, not ${ms}`);
  return ms;
}

// ---- The API.

/**
 * Every output of `filter` applied to `input` (a JSON value; undefined is taken as null), in order:
 * `.a[]` gives one value per item, `[.a[]]` one array, `empty` none. Throws JqError when the filter does
 * not compile, fails at run time (even after some outputs, as jq's exit status says), runs longer than
 * `timeoutMs` (default 2 s), or its input or output is over 8 MiB as JSON.
 */
export async function jq(filter: string, input: unknown, opts?: JqOptions): Promise<unknown[]> {
  checkFilter(filter);
  const timeoutMs = timeLimit(opts);
  let json: string | undefined;
  try {
    json = JSON.stringify(input === undefined ? null : input);
  } catch (e) {
    throw jqError(filter, 'input', `is not JSON: ${(e as Error).message}`);
  }
  if (json === undefined) throw jqError(filter, 'input', `is not JSON: a ${typeof input}`);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > JQ_LIMITS.inputBytes) {
    throw jqError(
      filter,
      'input',
      `is ${bytes.toLocaleString('en')} bytes as JSON; at most ${JQ_LIMITS.inputBytes.toLocaleString('en')} (${mib(JQ_LIMITS.inputBytes)})`,
    );
  }
  const reply = await evaluate(filter, json, timeoutMs, opts?.owner, opts?.budget);
  const error = replyError(filter, reply);
  if (error) throw error;
  return (reply as { values: unknown[] }).values;
}

/** The first output of `filter` (yadage's `multiple_output=False`); JqError when there is none. */
export async function jqFirst(filter: string, input: unknown, opts?: JqOptions): Promise<unknown> {
  const values = await jq(filter, input, opts);
  if (!values.length) throw jqError(filter, 'no-output', 'gave no output (one was needed)');
  return values[0];
}

/**
 * Why `filter` does not compile (jq's message, e.g. "syntax error, unexpected end of file at
 * <top-level>, line 1" or "foo/1 is not defined at <top-level>, line 1"), or null when it does.
 * For submission-time checks: jq gets no input at all, so it compiles the filter and runs it on
 * nothing (no user data is evaluated). Throws only when the check itself could not be made (and
 * a JqError of kind 'budget' when `opts.budget` ran out: the caller says what the budget was for).
 */
export async function jqProblem(filter: string, opts?: Omit<JqOptions, 'timeoutMs'>): Promise<string | null> {
  if (typeof filter !== 'string') return 'a jq filter is a string';
  try {
    checkFilter(filter);
    const reply = await evaluate(filter, '', JQ_LIMITS.timeoutMs, opts?.owner, opts?.budget);
    const error = replyError(filter, reply);
    if (error) throw error;
    return null;
  } catch (e) {
    if (!(e instanceof JqError) || e.kind === 'crash' || e.kind === 'busy' || e.kind === 'budget') throw e;
    if (e.kind === 'timeout') return `it took longer than ${seconds(JQ_LIMITS.timeoutMs)} to compile`;
    if (e.kind === 'filter') return `it ${e.detail}`;
    if (e.kind === 'trap') return `jq stopped on it (${e.detail}); write it more simply`;
    return e.detail;
  }
}
