// The cluster options form (dask-gateway's option spec) and the server-side validation of the values
// a user sends. Defaults come from the config; every value is checked before anything is created.
import type { Field } from '@af-gateway/schemas';
import { displayNameProblem, MAX_DISPLAY_NAME } from '@af-gateway/schemas/display-name';
import type { ClusterOptionField, ResolvedConfig } from '../config.js';
import { unprocessable } from '../errors.js';
import type { ClusterSettings } from './model.js';

/** Bounds on what a user may put in an option: each value ends up in a process's environment, a
 * submit description or a pod spec, so no control characters (tab aside) and modest sizes. */
const MAX_STRING = 4096;
const MAX_KEYS = 256;
const MAX_MAPPING_BYTES = 65_536;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** Names container runtimes read when they make a container, to hand it devices: NVIDIA's runtime gives a
 * container without a GPU limit every GPU named by NVIDIA_VISIBLE_DEVICES (`all`) where it honours the
 * variable (its default), and its other NVIDIA_* variables widen what it mounts; AMD's does the same with
 * AMD_VISIBLE_DEVICES. GPUs are the admin's to give (worker_groups[].gpus and access), never an option's
 * nor a workflow step's (yadage-features.ts refuses them in a step's env with this).
 * (CUDA_VISIBLE_DEVICES and the like only narrow what a process was given, and task code can set them anyway.) */
export const DEVICE_ENV = /^(NVIDIA_|AMD_VISIBLE_DEVICES$)/i;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]/;

function checkText(text: string, max: number, bad: (what: string) => never, what: string): void {
  if (text.length > max) bad(`${what} is longer than ${max} characters`);
  const m = CONTROL.exec(text);
  if (m)
    bad(
      `${what} contains the control character U+${m[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} (newlines and other control characters are refused)`,
    );
}

/** Nesting a mapping's values may have: they are kept and sent as JSON, which is written recursively. */
const MAX_DEPTH = 32;

/** Whether a value nests objects and lists deeper than `max` (walked without recursion). */
function deeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (!v || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/** A refused value as the message quotes it: at most 120 characters (JSON.parse takes any nesting, JSON.stringify does not). */
function quote(v: unknown): string {
  if (deeperThan(v, MAX_DEPTH)) return `a value nested more than ${MAX_DEPTH} deep`;
  const got = JSON.stringify(v) ?? String(v);
  return got.length > 120 ? `${got.slice(0, 120)}…` : got;
}

/** The readable name of a cluster (the display_name target): shown in the Lab's cards and tabs and the event stream. */
export const DISPLAY_NAME_FIELD = 'display_name';

/** The form's own name field when the config declares none: first, as a name is the first thing to type. */
// (the generated type reads a field's `default` as an object: the schema leaves it untyped)
const BUILT_IN_DISPLAY_NAME = {
  field: DISPLAY_NAME_FIELD,
  type: 'string',
  label: 'Name',
  default: '',
  target: 'display_name',
} as unknown as ClusterOptionField;

/**
 * A display name as kept: trimmed, at most 64 characters (code points), printable only; empty for none.
 * `bad` says what is wrong (a 422 naming the field).
 */
export function normaliseDisplayName(v: unknown, bad: (what: string) => never): string {
  if (typeof v !== 'string') return bad('must be a string');
  // bounded before anything else looks at it
  if (v.length > MAX_STRING) bad(`is longer than ${MAX_DISPLAY_NAME} characters`);
  const name = v.trim();
  const problem = displayNameProblem(name);
  if (problem) bad(problem);
  return name;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function defaultOf(f: ClusterOptionField): unknown {
  if (f.default !== undefined) return f.default;
  switch (f.type) {
    case 'int':
    case 'float':
      return f.min ?? 0;
    case 'select':
      return f.options?.[0] ?? null;
    case 'string':
      return '';
    case 'bool':
      return false;
    case 'mapping':
      return {};
  }
}

export class ClusterOptions {
  private readonly fields: readonly ClusterOptionField[];

  constructor(configured: readonly ClusterOptionField[]) {
    // Every form offers a name (a notebook sets it as options.display_name) unless the config places its own.
    const named = configured.filter((f) => f.target === 'display_name');
    if (named.length > 1) throw new Error(`cluster options ${named.map((f) => f.field).join(', ')} all target display_name; one field may`);
    if (named[0] && named[0].type !== 'string') throw new Error(`cluster option ${named[0].field} targets display_name and must be of type string`);
    const taken = configured.some((f) => f.field === DISPLAY_NAME_FIELD);
    this.fields = named.length || taken ? configured : [BUILT_IN_DISPLAY_NAME, ...configured];
    // A config whose own defaults break its own rules is an operator error: fail at start-up.
    for (const f of this.fields) this.check(f, defaultOf(f));
  }

  /** The form's fields, as GET /api/v1/options sends them (options-spec.json). */
  spec(): Field[] {
    return this.fields.map((f) => ({
      field: f.field,
      label: f.label ?? f.field,
      default: defaultOf(f),
      spec:
        f.type === 'int' || f.type === 'float'
          ? { type: f.type, min: f.min ?? null, max: f.max ?? null }
          : f.type === 'select'
            ? { type: f.type, options: f.options ?? [] }
            : { type: f.type },
    }));
  }

  /** Validates a request's options and fills in defaults; throws a 422 naming the offending field. */
  parse(requested: unknown): Record<string, unknown> {
    const values = requested ?? {};
    if (!isPlainObject(values)) throw unprocessable('cluster_options must be an object of option values');
    const known = new Set(this.fields.map((f) => f.field));
    const unknown = Object.keys(values).filter((k) => !known.has(k));
    if (unknown.length) {
      throw unprocessable(
        `Unknown cluster option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}; ` +
          `this gateway offers: ${[...known].join(', ') || '(none)'}`,
        'unknown_option',
      );
    }
    const out: Record<string, unknown> = {};
    for (const f of this.fields) {
      const v = f.field in values ? values[f.field] : defaultOf(f);
      out[f.field] = this.check(f, v);
    }
    return out;
  }

  /** The cluster's readable name from parsed values ('' for none). */
  displayName(values: Record<string, unknown>): string {
    const f = this.fields.find((x) => x.target === 'display_name');
    const v = f ? values[f.field] : undefined;
    return typeof v === 'string' ? v : '';
  }

  /** Throws a 422 naming the field when `v` does not fit it; returns the value as kept (a name trimmed). */
  private check(f: ClusterOptionField, v: unknown): unknown {
    const bad = (what: string): never => {
      throw unprocessable(`Invalid value for cluster option '${f.field}': ${what} (got ${quote(v)})`, 'invalid_option');
    };
    if (f.target === 'display_name') return normaliseDisplayName(v, bad);
    switch (f.type) {
      case 'int':
        if (typeof v !== 'number' || !Number.isInteger(v)) bad('must be an integer');
        break;
      case 'float':
        if (typeof v !== 'number' || !Number.isFinite(v)) bad('must be a number');
        break;
      case 'select':
        if (typeof v !== 'string' || !(f.options ?? []).includes(v)) bad(`must be one of ${(f.options ?? []).join(', ')}`);
        break;
      case 'string':
        if (typeof v !== 'string') bad('must be a string');
        checkText(v as string, MAX_STRING, bad, 'the value');
        break;
      case 'bool':
        if (typeof v !== 'boolean') bad('must be true or false');
        break;
      case 'mapping': {
        if (!isPlainObject(v)) bad('must be a mapping');
        const entries = Object.entries(v as Record<string, unknown>);
        if (entries.length > MAX_KEYS) bad(`may have at most ${MAX_KEYS} keys, not ${entries.length}`);
        for (const [key, value] of entries) {
          if (f.target === 'environment') {
            // What every backend can pass on: a POSIX name (Kubernetes, HTCondor and the shell agree on it).
            if (!ENV_NAME.test(key))
              bad(`${JSON.stringify(key.slice(0, 64))} is not an environment variable name (letters, digits and _, not starting with a digit, at most 256)`);
            if (DEVICE_ENV.test(key))
              bad(
                `${key} asks the container runtime for GPUs or other devices; GPUs come from the worker groups your facility set up, not from the environment`,
              );
            if (typeof value !== 'string') bad(`environment values must be strings (${key} is not)`);
            checkText(value as string, MAX_STRING, bad, `the value of ${key}`);
          } else {
            checkText(key, 256, bad, 'a key');
          }
        }
        if (f.target !== 'environment' && deeperThan(v, MAX_DEPTH)) bad(`nests objects and lists more than ${MAX_DEPTH} deep`);
        if (f.target !== 'environment' && JSON.stringify(v).length > MAX_MAPPING_BYTES) bad(`is larger than ${MAX_MAPPING_BYTES} bytes as JSON`);
        break;
      }
    }
    if (typeof v === 'number') {
      if (f.min != null && v < f.min) bad(`must be at least ${f.min}`);
      if (f.max != null && v > f.max) bad(`must be at most ${f.max}`);
    }
    return v;
  }

  /** The settings a cluster runs with: config defaults overridden by the options that target them. */
  settings(values: Record<string, unknown>, config: ResolvedConfig['cluster']): ClusterSettings {
    const s: ClusterSettings = {
      worker_cores: config.worker_cores,
      worker_memory: config.worker_memory,
      environment: { ...config.environment },
      idle_timeout: config.idle_timeout,
    };
    for (const f of this.fields) {
      const v = values[f.field];
      switch (f.target) {
        case 'worker_cores':
          s.worker_cores = Math.max(1, Math.round(Number(v)));
          break;
        case 'worker_memory':
          s.worker_memory = Number(v);
          break;
        case 'idle_timeout':
          s.idle_timeout = Number(v);
          break;
        case 'environment':
          Object.assign(s.environment, v as Record<string, string>);
          break;
        case 'worker_profile':
          if (typeof v === 'string' && v) s.worker_profile = v;
          break;
      }
    }
    return s;
  }
}
