// What a worker group is beyond its size (worker_groups[]): the GPUs and image of its workers, the
// Dask resources they carry, and who may use it. The engine asks here; the config is checked here
// at start, so a group no backend can honour never reaches a backend.
import type { ResolvedConfig } from '../config.js';

/** A worker group as the config defines it (worker_groups[]). */
export type GroupConfig = ResolvedConfig['worker_groups'][number];

/** The Dask label a group's GPUs get unless the admin names one (the name Dask's own docs use: resources={"GPU": 1}). */
export const GPU_LABEL = 'GPU';

/** A group's Dask worker resources: the configured ones, plus GPU: gpus when it has GPUs and no GPU label of its own. */
export function groupDaskResources(g: Pick<GroupConfig, 'resources' | 'gpus'>): Record<string, number> {
  const resources = { ...g.resources };
  if (g.gpus > 0 && !Object.hasOwn(resources, GPU_LABEL)) resources[GPU_LABEL] = g.gpus;
  return resources;
}

/** Whose cluster it is, as the engine knows it: the owner's name and their groups when the cluster was created. */
export interface GroupUser {
  username: string;
  groups: readonly string[];
}

/** Why `user` may not use the group, in a sentence for people; null when they may. */
export function accessRefusal(g: Pick<GroupConfig, 'name' | 'access'>, user: GroupUser): string | null {
  const a = g.access;
  if (!a) return null;
  if (a.users.includes(user.username) || a.groups.some((x) => user.groups.includes(x))) return null;
  // (the names of the users it is open to are never told: they are other people's)
  const shown = a.groups.slice(0, 5).join(' or ');
  const more = a.groups.length > 5 ? ` (or ${a.groups.length - 5} more groups)` : '';
  const who = a.groups.length
    ? `for members of ${shown}${more}${a.users.length ? ' and users the facility named' : ''}`
    : a.users.length
      ? 'for users the facility named'
      : 'closed to every user';
  return `Worker group ${g.name} is ${who}; ask your facility`;
}

type BackendSection = ResolvedConfig['backend'];

/**
 * What no backend of a group can honour, one sentence per problem, each naming the key: GPUs or an
 * image on the local backend, an image on Slurm, and GPUs or an image the backend's own extra
 * settings would ask for a second time.
 */
export function groupProfileProblems(config: ResolvedConfig): string[] {
  const problems: string[] = [];
  config.worker_groups.forEach((g, i) => {
    const where = `worker_groups[${i}] (${g.name})`;
    const b = (g.backend ?? config.backend) as BackendSection;
    const whose = g.backend ? `the group's backend.${b.type}` : `backend.${b.type}`;
    if (b.type === 'local') {
      if (g.gpus > 0)
        problems.push(
          `${where}.gpus: the local backend cannot give workers GPUs (they are processes on the gateway's machine, which hands out no devices); give the group a backend that does (htcondor, slurm or kubernetes) or set gpus to 0`,
        );
      if (g.image)
        problems.push(
          `${where}.image: the local backend runs no container images (its workers are processes on the gateway's machine); give the group an htcondor or kubernetes backend, or remove image`,
        );
    }
    if (b.type === 'slurm') {
      if (g.image)
        problems.push(
          `${where}.image: the Slurm backend runs no container images (Slurm's --container needs an OCI runtime set up on every node, which the gateway does not drive); point the group's backend.slurm.python at an environment on the nodes, or give the group an htcondor or kubernetes backend`,
        );
      const gres = g.gpus > 0 ? b.slurm.sbatch_options.find((o) => /^--(gres|gpus(-per-[a-z]+)?)(=|$)/.test(o)) : undefined;
      if (gres)
        problems.push(
          `${where}.gpus: ${whose}.sbatch_options already asks for ${gres}, which would replace or contradict the group's --gres; remove it there (the group's GPUs are asked for as backend.slurm.gpu_gres)`,
        );
    }
    if (b.type === 'htcondor') {
      const extra = Object.keys(b.htcondor.submit_extra).map((k) => k.toLowerCase());
      if (g.gpus > 0 && extra.includes('request_gpus'))
        problems.push(`${where}.gpus: ${whose}.submit_extra sets request_gpus too, which would replace the group's; remove it there`);
      const imageKeys = extra.filter((k) => ['universe', 'container_image', 'docker_image'].includes(k));
      if (g.image && imageKeys.length)
        problems.push(`${where}.image: ${whose}.submit_extra sets ${imageKeys.join(', ')} too, which would replace the group's image; remove it there`);
    }
  });
  return problems;
}
