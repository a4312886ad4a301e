// What a pod's status means for the user: running, waiting (and why: no node fits, image pulling),
// or ended (and why: exit code, an image that cannot be pulled, eviction).
import type { V1Pod } from '@kubernetes/client-node';
import type { ProcessState } from '../backend.js';

/** Container waiting reasons that will not resolve by waiting longer. */
const FATAL_WAITING = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'CreateContainerConfigError',
  'CreateContainerError',
  'ErrImageNeverPull',
  'RunContainerError',
]);

export function podState(pod: V1Pod | undefined, now = Date.now()): ProcessState {
  if (!pod) return { alive: false, detail: 'its pod no longer exists' };
  const name = pod.metadata?.name ?? 'pod';
  const status = pod.status ?? {};
  const containers = status.containerStatuses ?? [];
  if (pod.metadata?.deletionTimestamp) return { alive: false, detail: `pod ${name} is being deleted` };
  for (const c of containers) {
    const w = c.state?.waiting;
    if (w?.reason && FATAL_WAITING.has(w.reason)) {
      return { alive: false, detail: `pod ${name} cannot start: ${w.reason}${w.message ? `: ${w.message}` : ''}` };
    }
  }
  switch (status.phase) {
    case 'Running': {
      const started = containers.map((c) => c.state?.running?.startedAt).find(Boolean);
      return { alive: true, startedAt: started ? new Date(started).getTime() : undefined };
    }
    case 'Succeeded':
    case 'Failed': {
      const t = containers.map((c) => c.state?.terminated).find(Boolean);
      const why = t
        ? `exited with code ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}${t.message ? `: ${t.message}` : ''}`
        : status.reason
          ? `${status.reason}${status.message ? `: ${status.message}` : ''}`
          : status.phase.toLowerCase();
      return { alive: false, exitCode: t?.exitCode, detail: `pod ${name} ${why}` };
    }
    default: {
      const created = pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : now;
      const since = Math.max(0, Math.round((now - created) / 1000));
      const scheduled = status.conditions?.find((c) => c.type === 'PodScheduled');
      if (scheduled?.status === 'False') {
        return {
          alive: true,
          waiting: `pod ${name} is pending for ${since} s: ${scheduled.reason ?? 'not scheduled'}${scheduled.message ? `: ${scheduled.message}` : ''}`,
        };
      }
      const w = containers.map((c) => c.state?.waiting).find(Boolean);
      if (w) return { alive: true, waiting: `pod ${name} is starting for ${since} s: ${w.reason ?? 'waiting'}${w.message ? `: ${w.message}` : ''}` };
      return { alive: true, waiting: `pod ${name} is ${scheduled ? 'starting' : 'waiting for a node'} (${since} s)` };
    }
  }
}
