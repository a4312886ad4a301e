// A workflow run's workspace as the Kubernetes backend shares it with the run owner's step pods
// (which run as the owner's uid, see pod-specs.ts). Step Jobs mount only their run's directory of
// the workspace volume, so on a cluster a run's directory is seen by the gateway and that run's pods
// alone. Steps write into their own directory, so the gateway may find links or other files planted
// there: every change here goes through a descriptor opened without following links and checked
// (/proc/self/fd) to be exactly the path expected, never through a path.
import { constants as fsc } from 'node:fs';
import { open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { stepFiles } from '../../workflows/step-files.js';

export interface WorkspaceAccount {
  name: string;
  uid: number;
  gid: number;
}

const gatewayUid = (): number => process.getuid?.() ?? -1;

/** `p` below `root` (root itself excluded), as a relative path; throws otherwise. */
function below(root: string, p: string, what: string): string {
  const rel = relative(root, p);
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) throw new Error(`${what} ${p} is not inside the workspace root ${root}`);
  return rel;
}

/**
 * Opens `path` (no link at any component: the descriptor's real path must be the expected one),
 * non-blocking so a planted FIFO cannot hang the gateway. Null when it does not exist.
 */
async function openExactly(path: string, expectedReal: string): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new Error(`refusing ${path}: it is a symbolic link`, { cause: err });
    throw err;
  }
  const actual = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => '');
  if (actual !== expectedReal) {
    await fh.close();
    throw new Error(`refusing ${path}: it leads to ${actual || 'an unknown place'}`);
  }
  return fh;
}

/**
 * A run's new directory (the gateway's, made 0700 by the workflow engine): its owner's step pods
 * pass through it. A root gateway makes it root:<owner's group> 0710, so no other account enters
 * (the test node agent runs pods as host processes, without mounts); a gateway without root (the
 * chart's pod) cannot give it a group and makes it 0711: on a cluster it is the root of the subPath
 * mount that only this run's pods have.
 */
export async function shareRunDir(root: string, dir: string, account: WorkspaceAccount): Promise<void> {
  const absRoot = resolve(root);
  const rel = below(absRoot, resolve(dir), "the run's directory");
  if (rel.includes(sep)) throw new Error(`the run's directory ${dir} is not directly inside the workspace root ${root}`);
  const fh = await openExactly(resolve(dir), join(await realpath(absRoot), rel));
  if (!fh) throw new Error(`the run's directory ${dir} does not exist`);
  try {
    const st = await fh.stat();
    if (!st.isDirectory() || st.uid !== gatewayUid()) throw new Error(`refusing to share ${dir}: not a directory of the gateway's`);
    if (gatewayUid() === 0) {
      await fh.chown(0, account.gid);
      await fh.chmod(0o710);
    } else {
      await fh.chmod(0o711);
    }
  } finally {
    await fh.close();
  }
}

/**
 * A step's directory becomes writable for its pod's uid before the pod starts.
 *
 * A root gateway gives the directory and what the gateway wrote in it (its .af with the wrapper and
 * the command) to the account, setgid (02700) so that what the gateway writes there later (a
 * retry's wrapper, mode 0660) has the account's group. That happens once: at the first attempt no
 * process of the user's had access to the directory yet; a retry finds it the account's and leaves
 * it alone (never walked again: the step may have planted anything in it).
 *
 * A gateway without root cannot give files away: it makes the directory and its .af 0777 and the
 * wrapper and the command 0644, at every attempt (a retry rewrites them); on a cluster only this
 * run's pods see them.
 */
export async function shareStepDir(root: string, workdir: string, account: WorkspaceAccount): Promise<void> {
  const absRoot = resolve(root);
  const dir = resolve(workdir);
  const realRoot = await realpath(absRoot);
  const real = (p: string) => join(realRoot, below(absRoot, p, "the step's directory"));
  const me = gatewayUid();
  const top = await openExactly(dir, real(dir));
  if (!top) throw new Error(`the step's directory ${workdir} does not exist`);
  try {
    const st = await top.stat();
    if (!st.isDirectory()) throw new Error(`refusing ${workdir}: not a directory`);
    if (st.uid === account.uid) return; // handed over at an earlier attempt
    if (st.uid !== me) throw new Error(`refusing ${workdir}: it belongs to uid ${st.uid}, neither the gateway nor ${account.name}`);
    if (me !== 0) {
      await top.chmod(0o777);
      const af = stepFiles(dir);
      for (const [p, mode] of [
        [af.dir, 0o777],
        [af.wrapper, 0o644],
        [af.command, 0o644],
      ] as const) {
        const fh = await openExactly(p, real(p));
        if (!fh) continue;
        try {
          const s = await fh.stat();
          if (s.uid === me && (s.isDirectory() || (s.isFile() && s.nlink === 1))) await fh.chmod(mode);
        } finally {
          await fh.close();
        }
      }
      return;
    }
    const walk = async (d: string): Promise<void> => {
      for (const name of await readdir(d)) {
        const p = join(d, name);
        const fh = await openExactly(p, real(p)).catch(() => null); // links and the like: left alone
        if (!fh) continue;
        try {
          const s = await fh.stat();
          if (s.uid !== me) continue;
          if (s.isDirectory()) {
            await walk(p);
            await fh.chmod((s.mode & 0o777) | 0o2000);
            await fh.chown(account.uid, account.gid);
          } else if (s.isFile() && s.nlink === 1) {
            await fh.chown(account.uid, account.gid);
          }
        } finally {
          await fh.close();
        }
      }
    };
    await walk(dir);
    await top.chmod(0o2700);
    await top.chown(account.uid, account.gid);
  } finally {
    await top.close();
  }
}
