// What of yadage's language a workflow uses, found before the schema is applied: parameters written
// as yadage's [{key, value}] list become the object form, and every part the gateway does not run
// is refused by name ("subworkflows are not supported") at its JSON path, instead of being misread
// or drowned in schema errors. The schema (workflow-spec.json) closes every object, so a key neither
// yadage nor the gateway knows is refused too.

import { DEVICE_ENV } from '../clusters/cluster-options.js';
import { setOwn } from './model.js';

/** `$.stages[0].scheduler["odd key"]` from path segments. */
export const jsonPath = (segments: (string | number)[]) =>
  '$' + segments.map((s) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`)).join('');

export interface FeatureProblem {
  segments: (string | number)[];
  message: string;
}

/** Parts of yadage's language, each with what the gateway answers while it does not run it. */
const NOT_SUPPORTED = {
  manual: 'manual steps (manual-instructions-*) are not supported: they need a person at a terminal',
  envscript: 'envscript (a script sourced in the container) is not supported: steps run without a container shell to source it in',
  'container workdir': 'a container workdir is not supported: steps start in their own directory',
  resources: 'container resources (CVMFS, grid proxies, GPUs) are not supported yet',
  'device environment':
    "NVIDIA_* and AMD_VISIBLE_DEVICES in a step's env are not supported: they ask the container runtime for GPUs, which steps do not have yet",
  'jsonpath outputs': 'output selections by JSONPath are not supported: name one output key',
  'empty selectors': 'a selector without output (the whole result) is not supported: name one output key',
  'single publish': 'an interpolated-pub publishing one value rather than an object of outputs is not supported: name the output',
} as const;
type Feature = keyof typeof NOT_SUPPORTED;

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** A stage selector the gateway reads: NAME, NAME[INDEX] or NAME[*]. */
export const STAGE_SELECTOR = /^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63}?)(?:\[(\d+|\*)\])?$/;
/** What makes an output name a JSONPath rather than a key. */
const JSONPATH_SYNTAX = /[$.[\]*@()?]/;

/**
 * Turns yadage's list form of parameters ([{key, value}]) into the object form, in place, in every
 * scheduler (subworkflows' too). A list that is not of that form is left for the schema to refuse.
 */
export function normaliseParameters(doc: unknown, problems: FeatureProblem[]): void {
  const walkWorkflow = (wf: unknown, segments: (string | number)[]) => {
    if (!isObject(wf) || !Array.isArray(wf.stages)) return;
    wf.stages.forEach((st, i) => {
      if (!isObject(st) || !isObject(st.scheduler)) return;
      const sch = st.scheduler;
      const at = [...segments, 'stages', i, 'scheduler'];
      const pars = sch.parameters;
      if (Array.isArray(pars) && pars.every((p) => isObject(p) && typeof p.key === 'string' && 'value' in p && Object.keys(p).length === 2)) {
        const out: Record<string, unknown> = {};
        pars.forEach((p: Record<string, unknown>, j) => {
          const key = p.key as string;
          if (Object.hasOwn(out, key)) problems.push({ segments: [...at, 'parameters', j, 'key'], message: `parameter ${key} is given twice` });
          setOwn(out, key, p.value);
        });
        sch.parameters = out;
      }
      walkWorkflow(sch.workflow, [...at, 'workflow']);
      if (Array.isArray(sch.cases)) sch.cases.forEach((c, j) => isObject(c) && walkWorkflow(c.workflow, [...at, 'cases', j, 'workflow']));
    });
  };
  walkWorkflow(doc, []);
}

/** Every use of a part of yadage's language the gateway does not run, at its path. */
export function unsupportedFeatures(doc: unknown): FeatureProblem[] {
  const out: FeatureProblem[] = [];
  const seen = new Set<string>();
  const refuse = (segments: (string | number)[], feature: Feature) => {
    const key = `${jsonPath(segments)} ${feature}`;
    if (seen.has(key) || out.length >= 50) return;
    seen.add(key);
    out.push({ segments, message: NOT_SUPPORTED[feature] });
  };
  const value = (v: unknown, segments: (string | number)[]) => {
    if (!isObject(v)) return;
    for (const k of ['stages', 'steps', 'step'] as const) {
      if (!(k in v)) continue;
      if (typeof v.output === 'string' && JSONPATH_SYNTAX.test(v.output)) refuse([...segments, 'output'], 'jsonpath outputs');
      if (!('output' in v) && k !== 'step') refuse(segments, 'empty selectors');
    }
  };
  const step = (st: unknown, segments: (string | number)[]) => {
    if (!isObject(st)) return;
    const proc = st.process;
    const env = st.environment;
    const pub = st.publisher;
    if (isObject(pub) && pub.publisher_type === 'interpolated-pub' && 'publish' in pub && !isObject(pub.publish))
      refuse([...segments, 'publisher', 'publish'], 'single publish');
    if (isObject(proc) && proc.process_type === 'manual-instructions-proc') refuse([...segments, 'process', 'process_type'], 'manual');
    if (isObject(pub) && pub.publisher_type === 'manual-instructions-pub') refuse([...segments, 'publisher', 'publisher_type'], 'manual');
    if (isObject(env) && env.environment_type === 'manual-instructions-env') refuse([...segments, 'environment', 'environment_type'], 'manual');
    if (isObject(env) && env.environment_type === 'docker-encapsulated') {
      if (typeof env.envscript === 'string' && env.envscript.trim()) refuse([...segments, 'environment', 'envscript'], 'envscript');
      if (env.workdir !== undefined && env.workdir !== null) refuse([...segments, 'environment', 'workdir'], 'container workdir');
      if (Array.isArray(env.resources) && env.resources.length) refuse([...segments, 'environment', 'resources'], 'resources');
      // (NVIDIA's container runtime, where it honours the variable, hands a container every GPU NVIDIA_VISIBLE_DEVICES=all names)
      if (isObject(env.env))
        for (const name of Object.keys(env.env)) if (DEVICE_ENV.test(name)) refuse([...segments, 'environment', 'env', name], 'device environment');
    }
  };
  const workflow = (wf: unknown, segments: (string | number)[]) => {
    if (!isObject(wf) || !Array.isArray(wf.stages)) return;
    wf.stages.forEach((st, i) => {
      if (!isObject(st)) return;
      const at = [...segments, 'stages', i];
      const deps = st.dependencies;
      const depList = Array.isArray(deps) ? deps : isObject(deps) && Array.isArray(deps.expressions) ? deps.expressions : [];
      if (isObject(deps) && deps.dependency_type === 'expressions_fulfilled') depList.forEach((e, j) => value(e, [...at, 'dependencies', 'expressions', j]));
      const sch = st.scheduler;
      if (!isObject(sch)) return;
      const s = [...at, 'scheduler'];
      if ('workflow' in sch) workflow(sch.workflow, [...s, 'workflow']);
      if ('cases' in sch) {
        if (Array.isArray(sch.cases))
          sch.cases.forEach((c, j) => {
            if (!isObject(c)) return;
            step(c.step, [...s, 'cases', j, 'step']);
            if ('workflow' in c) workflow(c.workflow, [...s, 'cases', j, 'workflow']);
          });
      }
      if (isObject(sch.register_values)) for (const [k, v] of Object.entries(sch.register_values)) value(v, [...s, 'register_values', k]);
      if (isObject(sch.parameters)) for (const [k, v] of Object.entries(sch.parameters)) value(v, [...s, 'parameters', k]);
      step(sch.step, [...s, 'step']);
    });
  };
  workflow(doc, []);
  return out;
}
