// A workflow whose DAG event is large: what the event-stream tests feed streams that do not read.

/**
 * The body of POST /api/af/workflows for a run of 141 x 141 = 19,881 steps (a cartesian scatter
 * of 141 items of 100 characters); the DAG event that adds them is about 14 MB. Its steps sleep 30 s
 * and it runs one at a time, so a test cancels it long before it ends.
 */
export function bigDagRunBody(): { entry: string; files: Record<string, string>; parameters: { items: string[] }; max_parallel: number } {
  const items = Array.from({ length: 141 }, (_, i) => String(i).padStart(100, 'x'));
  const wf = `stages:
  - name: fan
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {p: {step: init, output: items}, q: {step: init, output: items}}
      scatter: {method: cartesian, parameters: [p, q]}
      step: {process: {process_type: string-interpolated-cmd, cmd: 'sleep 30 {p} {q}'}, publisher: {publisher_type: constant-pub, publish: {}}, environment: {environment_type: localproc-env}}
`;
  return { entry: 'fan.yml', files: { 'fan.yml': wf }, parameters: { items }, max_parallel: 1 };
}
