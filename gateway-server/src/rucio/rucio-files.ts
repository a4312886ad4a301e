// A Rucio dataset as a list of file URLs: one PFN per file for the chosen scheme, in name order, as
// the run's owner. Workflows scatter over it (one step per file); errors say what to change.
import type { User } from '../auth/authenticator.js';
import type { RucioClient } from './rucio-client.js';

interface ReplicaLine {
  scope: string;
  name: string;
  pfns?: Record<string, { rse?: string; type?: string }>;
}

export async function rucioFileList(
  instances: Map<string, RucioClient>,
  user: User,
  ref: { instance: string; did: string; scheme?: string },
): Promise<string[]> {
  const client = instances.get(ref.instance);
  if (!client) throw new Error(`Rucio instance ${ref.instance} is not one of this gateway's (${[...instances.keys()].join(', ')})`);
  const [scope, name] = [ref.did.slice(0, ref.did.indexOf(':')), ref.did.slice(ref.did.indexOf(':') + 1)];
  const scheme = ref.scheme ?? 'root';
  let res: Response;
  try {
    // sort is given so that Rucio does not geo-locate the client for every file.
    res = await client.request(user, 'POST', '/replicas/list', { dids: [{ scope, name }], schemes: [scheme], all_states: false, sort: 'random' });
  } catch (err) {
    throw new Error(`Rucio ${ref.instance} could not list ${ref.did}: ${(err as Error).message}`, { cause: err });
  }
  const text = await res.text();
  const files: { name: string; pfn: string | undefined }[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as ReplicaLine;
    const pfns = Object.keys(r.pfns ?? {})
      .filter((p) => p.startsWith(`${scheme}://`))
      .sort();
    files.push({ name: `${r.scope}:${r.name}`, pfn: pfns[0] });
  }
  if (!files.length) throw new Error(`Rucio dataset ${ref.did} has no files with replicas`);
  const without = files.filter((f) => !f.pfn);
  if (without.length) {
    throw new Error(`${without.length} of ${files.length} files of ${ref.did} have no ${scheme} replica (e.g. ${without[0]!.name}); choose another scheme`);
  }
  return files.sort((a, b) => a.name.localeCompare(b.name)).map((f) => f.pfn!);
}
