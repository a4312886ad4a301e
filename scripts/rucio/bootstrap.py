"""Bootstraps the test data of a freshly started Rucio server, through the server itself.

Run by `scripts/rucio-server.sh start` with the server venv's python: every object is made with
the rucio client library (REST calls to the running server) as root with userpass, so the data
went through the same API paths the gateway uses. Writes <run-dir>/rucio.json at the end.

Deterministic: names, sizes and adler32 checksums derive from the file names only.

Three ways to run, as rucio-server.sh chooses:
  (default)         seed the data; with --storage every file is written into the storage servers'
                    data directories, owned by their account
  --seed-dir DIR    seed the data as above, but the files go under DIR/files/<site>/ (read-only to
                    the servers), and keep the seed: DIR/rucio.db (a consistent copy of the database
                    the server now serves) and DIR/seed.json (what the seed was made against: the
                    issuer, the RSEs' endpoints). Made in DIR.tmp, renamed to DIR when whole.
  --reuse DIR       the server already serves a copy of DIR/rucio.db: point its OIDC identities at
                    this start's issuer and its RSEs' protocols at this start's storage servers, and
                    link the servers' data directories to DIR/files (no file is written; about a second).
--huge N adds data26:ds.huge, N files on SITE-B_DISK (the demo's 100,000-file dataset).
"""
import argparse
import datetime
import json
import os
import pwd
import queue
import sqlite3
import sys
import threading
import time
import zlib

from rucio.client import Client

SCOPE = 'data26'
USER_SCOPE = 'user.alice'
RSES = {
    # name: (site, type, davs host, root host, path prefix)
    'SITE-A_DISK': ('SITE-A', 'DISK', 'webdav.site-a.test', 'xrootd.site-a.test', 'data'),
    'SITE-B_DISK': ('SITE-B', 'DISK', 'webdav.site-b.test', 'xrootd.site-b.test', 'data'),
    # where users may register outputs: Rucio's generic permissions let any account add replicas
    # only on RSEs whose name ends in SCRATCHDISK, USERDISK, LOCALGROUPDISK (or MOCK)
    'SITE-A_SCRATCHDISK': ('SITE-A', 'SCRATCHDISK', 'webdav.site-a.test', 'xrootd.site-a.test', 'scratch'),
}
BIG_FILES = 20000
# Files per attach/add_replicas call. Not 1000: on SQLite the server builds one OR over the chunk's
# files and SQLite refuses an expression deeper than 1000 ("Expression tree is too large (maximum
# depth 1000)", a 500 DatabaseException); 999 fails too, 990 works. The server's time goes into
# building its statements, about 1 ms a file whatever the chunk (10,000 files: 13.2 s in chunks of
# 500, 11.6 s in chunks of 990), so a chunk as large as SQLite allows, with room to spare.
CHUNK = 900
ACCOUNT_LIMIT = 10**15  # bytes per RSE: quotas never stop a test rule


# Set by --storage: the files then exist on the test storage, with this content (small, stable per
# name), and their sizes and checksums are the content's; without storage they are numbers only.
ON_STORAGE = False


def file_content(name: str) -> bytes:
    line = f'{name}: a file of the AF Gateway test Rucio\n'.encode()
    return line * (1 + zlib.crc32(name.encode()) % 40)


def file_did(scope: str, name: str) -> dict:
    if ON_STORAGE:
        content = file_content(name)
        return {'scope': scope, 'name': name, 'bytes': len(content), 'adler32': '%08x' % zlib.adler32(content)}
    digest = zlib.crc32(name.encode())
    size = 1_000_000 + digest % 9_000_000          # 1-10 MB, stable per name
    adler = '%08x' % zlib.adler32(name.encode())  # 8 lowercase hex digits, as Rucio stores them
    return {'scope': scope, 'name': name, 'bytes': size, 'adler32': adler}


def protocol(scheme: str, hostname: str, port: int, prefix: str, impl: str, priority: int) -> dict:
    """An RSE protocol that may read, write, delete and take part in third-party copies, at `priority` everywhere."""
    ops = {'read': priority, 'write': priority, 'delete': priority}
    return {
        'scheme': scheme, 'hostname': hostname, 'port': port, 'prefix': prefix, 'impl': impl,
        'domains': {'lan': dict(ops),
                    'wan': {**ops, 'third_party_copy_read': priority, 'third_party_copy_write': priority}},
    }


def chunks(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def endpoints(storage) -> dict:
    """Where each RSE's davs and root protocols point: the storage's two servers (SITE-A's RSEs on the
    first, SITE-B's on the second), or made-up hosts without storage."""
    out = {}
    for rse, (site, _type, davs_host, root_host, _path) in RSES.items():
        if storage:
            server = storage['instances'][0 if site == 'SITE-A' else 1]
            out[rse] = {'davs': ['127.0.0.1', server['http_port']], 'root': ['127.0.0.1', server['root_port']],
                        'data_dir': server['data_dir']}
        else:
            out[rse] = {'davs': [davs_host, 443], 'root': [root_host, 1094]}
    return out


def rse_protocols(rse: str, ends: dict) -> list:
    path = RSES[rse][4]
    return [protocol('davs', *ends['davs'], f'/{path}/', 'rucio.rse.protocols.gfal.Default', 1),
            protocol('root', *ends['root'], f'//{path}/', 'rucio.rse.protocols.xrootd.Default', 2)]


def describe_rses(ends: dict) -> dict:
    rses = {}
    for rse, (site, rse_type, *_rest, path) in RSES.items():
        (dh, dp), (rh, rp) = ends[rse]['davs'], ends[rse]['root']
        rses[rse] = {'site': site, 'type': rse_type, 'davs': f'davs://{dh}:{dp}/{path}/', 'root': f'root://{rh}:{rp}//{path}/'}
        if 'data_dir' in ends[rse]:
            rses[rse]['data_dir'] = ends[rse]['data_dir']
    return rses


def dataset_facts(huge: int) -> dict:
    """What the seed holds (the same for every seed with these constants), for rucio.json."""
    datasets = {
        f'{SCOPE}:ds.small': {'files': 5, 'rses': ['SITE-A_DISK', 'SITE-B_DISK'], 'datatype': 'NTUP'},
        f'{SCOPE}:ds.mc.2026': {'files': 3, 'rses': ['SITE-A_DISK'], 'datatype': 'AOD'},
        f'{SCOPE}:ds.mc.2027': {'files': 3, 'rses': ['SITE-B_DISK'], 'datatype': 'DAOD'},
        f'{USER_SCOPE}:ds.alice.ntuples': {'files': 3, 'rses': ['SITE-A_DISK'], 'datatype': 'NTUP'},
        f'{SCOPE}:ds.big': {'files': BIG_FILES, 'rses': ['SITE-A_DISK'], 'datatype': 'AOD'},
    }
    if huge:
        datasets[f'{SCOPE}:ds.huge'] = {'files': huge, 'rses': ['SITE-B_DISK'], 'datatype': 'AOD'}
    return datasets


class FileWriter:
    """Writes the files of registered chunks onto the storage in a thread of its own, while the server
    registers the next chunk. Where a file goes is Rucio's own LFN-to-path algorithm (the RSEs' `hash`),
    checked against the server's answer for the first file of each dataset on each RSE."""

    def __init__(self, client, rses: dict, storage, files_root):
        from rucio.rse.translation import RSEDeterministicTranslation
        self.c, self.rses, self.files_root = client, rses, files_root
        self.translate = {rse: RSEDeterministicTranslation(rse, {'lfn2pfn_algorithm': 'hash'}) for rse in RSES}
        self.owner = None if files_root else pwd.getpwnam(storage['user'])
        self.made_dirs = set()
        self.written = 0
        self.jobs = queue.Queue(maxsize=4)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def base(self, rse: str) -> str:
        """The directory a PFN's path is relative to: the server's data directory, or the seed's tree of its site."""
        return os.path.join(self.files_root, RSES[rse][0]) if self.files_root else self.rses[rse]['data_dir']

    def relative(self, rse: str, scope: str, name: str) -> str:
        return f'{RSES[rse][4]}/{self.translate[rse].path(scope, name)}'

    def check(self, rse: str, f: dict):
        did = f"{f['scope']}:{f['name']}"
        pfn = self.c.lfns2pfns(rse, [did], scheme='root', operation='read')[did]
        theirs, ours = pfn.split('//', 2)[2], self.relative(rse, f['scope'], f['name'])
        if theirs != ours:
            raise RuntimeError(f'{did} on {rse}: the server says {pfn}, the local translation {ours}')

    def put(self, rse: str, part: list):
        if self.error:
            raise self.error
        self.jobs.put((rse, part))

    def _mkdirs(self, d: str, top: str):
        if d in self.made_dirs:
            return
        todo = []
        while d != top and d not in self.made_dirs:
            todo.append(d)
            d = os.path.dirname(d)
        for d in reversed(todo):
            os.makedirs(d, mode=0o755, exist_ok=True)
            if self.owner:
                os.chown(d, self.owner.pw_uid, self.owner.pw_gid)
            else:
                os.chmod(d, 0o755)  # the servers' account reads the seed's tree, whatever the umask
            self.made_dirs.add(d)

    def _run(self):
        try:
            while (job := self.jobs.get()) is not None:
                rse, part = job
                top = self.base(rse)
                for f in part:
                    target = os.path.join(top, self.relative(rse, f['scope'], f['name']))
                    self._mkdirs(os.path.dirname(target), top)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    with os.fdopen(fd, 'wb') as out:
                        out.write(file_content(f['name']))
                    if self.owner:
                        os.chown(target, self.owner.pw_uid, self.owner.pw_gid)
                    self.written += 1
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
            while self.jobs.get() is not None:  # let put() and close() go on
                pass

    def close(self) -> int:
        self.jobs.put(None)
        self.thread.join()
        if self.error:
            raise self.error
        return self.written


def seed(c, args, storage, files_root, log) -> dict:
    """Makes every account, RSE, dataset and rule; returns the timings."""
    # --- accounts, OIDC identities (exactly "SUB=<sub>, ISS=<issuer>"), scopes
    for name in ('alice', 'bob'):
        c.add_account(name, 'USER', f'{name}@af.test')
        c.add_identity(account=name, identity=f'SUB={name}, ISS={args.issuer}', authtype='OIDC', email=f'{name}@af.test', default=True)
        c.add_scope(name, f'user.{name}')
    c.add_scope('root', SCOPE)
    log('accounts alice, bob (OIDC identities), scopes user.alice, user.bob, data26')

    # --- RSEs: deterministic, davs (https-like, port 443) and root protocols, attributes
    ends = endpoints(storage)
    for rse, (site, rse_type, *_rest) in RSES.items():
        c.add_rse(rse, deterministic=True)
        for key, value in (('site', site), ('type', rse_type), ('tier', 2), ('cloud', 'AF'),
                           ('lfn2pfn_algorithm', 'hash')):
            c.add_rse_attribute(rse, key, value)
        for p in rse_protocols(rse, ends[rse]):
            c.add_protocol(rse, p)
        for account in ('root', 'alice', 'bob'):
            c.set_local_account_limit(account, rse, ACCOUNT_LIMIT)
    c.add_distance('SITE-A_DISK', 'SITE-B_DISK', {'distance': 1})
    c.add_distance('SITE-B_DISK', 'SITE-A_DISK', {'distance': 1})
    log('RSEs SITE-A_DISK, SITE-B_DISK, SITE-A_SCRATCHDISK (davs + root), account limits')

    writer = FileWriter(c, describe_rses(ends), storage, files_root) if storage else None

    def dataset(scope, name, files, rse_list, meta=None):
        c.add_dataset(scope, name)
        first, *others = rse_list
        for i, part in enumerate(chunks(files, CHUNK)):
            c.add_files_to_dataset(scope, name, part, rse=first)  # registers the replicas on `first`
            for rse in others:
                c.add_replicas(rse, [{k: f[k] for k in ('scope', 'name', 'bytes', 'adler32')} for f in part])
            if writer:
                for rse in rse_list:
                    if i == 0:
                        writer.check(rse, part[0])
                    writer.put(rse, part)
        if meta:
            c.set_metadata_bulk(scope, name, meta)

    # ds.small: 5 files with replicas on both RSEs, and a root rule on SITE-A_DISK
    small = [file_did(SCOPE, f'file.small.{i:04d}.root') for i in range(1, 6)]
    dataset(SCOPE, 'ds.small', small, ['SITE-A_DISK', 'SITE-B_DISK'],
            {'datatype': 'NTUP', 'project': 'data26', 'run_number': 260001, 'stream_name': 'physics_Main'})
    c.add_replication_rule([{'scope': SCOPE, 'name': 'ds.small'}], 1, 'SITE-A_DISK')

    # ds.mc.2026 / ds.mc.2027 (wildcard ds.mc.*), in container cont.mc
    for year, rse, datatype in ((2026, 'SITE-A_DISK', 'AOD'), (2027, 'SITE-B_DISK', 'DAOD')):
        files = [file_did(SCOPE, f'file.mc.{year}.{i:04d}.root') for i in range(1, 4)]
        dataset(SCOPE, f'ds.mc.{year}', files, [rse], {'datatype': datatype, 'project': f'mc{year % 100}'})
    c.add_container(SCOPE, 'cont.mc')
    c.add_datasets_to_container(SCOPE, 'cont.mc', [{'scope': SCOPE, 'name': 'ds.mc.2026'}, {'scope': SCOPE, 'name': 'ds.mc.2027'}])
    c.set_metadata(SCOPE, 'cont.mc', 'datatype', 'AOD')
    log('ds.small, ds.mc.2026, ds.mc.2027, cont.mc')

    # user.alice: a dataset of alice's, with a rule of hers on SITE-A_DISK
    alice_files = [file_did(USER_SCOPE, f'user.alice.ntuple.{i:04d}.root') for i in range(1, 4)]
    dataset(USER_SCOPE, 'ds.alice.ntuples', alice_files, ['SITE-A_DISK'], {'datatype': 'NTUP'})
    c.add_replication_rule([{'scope': USER_SCOPE, 'name': 'ds.alice.ntuples'}], 1, 'SITE-A_DISK', account='alice')

    # ds.big: 20,000 files on SITE-A_DISK, registered in chunks of CHUNK
    t_big = time.monotonic()
    big = [file_did(SCOPE, f'file.big.{i:06d}.root') for i in range(1, BIG_FILES + 1)]
    dataset(SCOPE, 'ds.big', big, ['SITE-A_DISK'], {'datatype': 'AOD', 'project': 'data26'})
    big_seconds = round(time.monotonic() - t_big, 2)
    log(f'ds.big: {BIG_FILES} files in {big_seconds}s')
    closed = ['ds.small', 'ds.mc.2026', 'ds.mc.2027', 'ds.big']

    huge_seconds = None
    if args.huge:
        # ds.huge: the dataset a browser must stream (the demo's), on the second RSE
        t_huge = time.monotonic()
        huge = [file_did(SCOPE, f'file.huge.{i:06d}.root') for i in range(1, args.huge + 1)]
        dataset(SCOPE, 'ds.huge', huge, ['SITE-B_DISK'], {'datatype': 'AOD', 'project': 'data26'})
        huge_seconds = round(time.monotonic() - t_huge, 2)
        log(f'ds.huge: {args.huge} files in {huge_seconds}s')
        closed.append('ds.huge')

    # published data is closed (Rucio then fills the datasets' length and bytes); user.alice's stays
    # open, for registering outputs into it
    for name in closed:
        c.close(SCOPE, name)
    written = writer.close() if writer else 0
    log(f'data26 datasets closed; {written} files on the storage')
    return {'big_dataset_seconds': big_seconds, 'huge_dataset_seconds': huge_seconds, 'files_written': written}


def rebind(c, args, storage, made: dict, log):
    """A reused seed was made against another start's issuer and storage servers: point its identities
    and RSE protocols at this start's (Rucio changes a protocol's host or port only by replacing it)."""
    if made['issuer'] != args.issuer:
        for name in ('alice', 'bob'):
            c.add_identity(account=name, identity=f'SUB={name}, ISS={args.issuer}', authtype='OIDC', email=f'{name}@af.test', default=True)
            c.del_identity(name, f"SUB={name}, ISS={made['issuer']}", 'OIDC')
    ends = endpoints(storage)
    moved = 0
    for rse in RSES:
        old = made['endpoints'][rse]
        for p in rse_protocols(rse, ends[rse]):
            host, port = old[p['scheme']]
            if [host, port] != [p['hostname'], p['port']]:
                c.delete_protocols(rse, p['scheme'], hostname=host, port=port)
                c.add_protocol(rse, p)
                moved += 1
    log(f"identities for issuer {args.issuer}{'' if made['issuer'] != args.issuer else ' (unchanged)'}; {moved} RSE protocols moved to this start's servers")


def link_files(storage, seed_dir: str) -> list:
    """Each storage server's data directory gets a link per top directory of its site's tree in the seed
    (data -> DIR/files/SITE-A/data): the servers read the seed's files where they are, and cannot
    change them (root's, read-only to their account); new top directories (scratch/) stay theirs."""
    links = []
    for i, site in enumerate(('SITE-A', 'SITE-B')):
        tree = os.path.join(seed_dir, 'files', site)
        data_dir = storage['instances'][i]['data_dir']
        for top in sorted(os.listdir(tree)) if os.path.isdir(tree) else []:
            link = os.path.join(data_dir, top)
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(os.path.join(tree, top), link)
            links.append(link)
    return links


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--run-dir', required=True)
    ap.add_argument('--url', required=True)
    ap.add_argument('--issuer', required=True)
    ap.add_argument('--audience', required=True)
    ap.add_argument('--scope-claim', required=True)
    ap.add_argument('--username', required=True)
    ap.add_argument('--password', required=True)
    ap.add_argument('--info', required=True, help='JSON object with server facts to merge into rucio.json')
    ap.add_argument('--storage', help="scripts/xrootd-storage.sh's storage.json: the RSEs' protocols point at its "
                                      "servers and every registered file is written there")
    ap.add_argument('--huge', type=int, default=0, help='files of data26:ds.huge (none by default)')
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument('--seed-dir', help='seed, and keep the seed in this directory (made as DIR.tmp, then renamed)')
    mode.add_argument('--reuse', metavar='SEED_DIR', help='the server serves a copy of SEED_DIR/rucio.db: adapt it to this start')
    ap.add_argument('--seed-key', default='', help="the seed's key (for rucio.json)")
    args = ap.parse_args()
    storage = None
    if args.storage:
        global ON_STORAGE
        ON_STORAGE = True
        with open(args.storage) as f:
            storage = json.load(f)

    t0 = time.monotonic()
    c = Client(rucio_host=args.url, auth_host=args.url, account='root', auth_type='userpass',
               creds={'username': args.username, 'password': args.password}, timeout=300)
    log = lambda msg: print(f'[rucio-bootstrap] {time.monotonic() - t0:6.2f}s {msg}', file=sys.stderr, flush=True)  # noqa: E731

    if args.reuse:
        with open(os.path.join(args.reuse, 'seed.json')) as f:
            made = json.load(f)
        log(f"reusing the seed {args.reuse} (made {made['made']} in {made['seed_seconds']}s)")
        rebind(c, args, storage, made, log)
        timings = {k: made[k] for k in ('big_dataset_seconds', 'huge_dataset_seconds', 'files_written')}
        seed_dir = args.reuse
    else:
        seed_dir = None
        files_root = None
        if args.seed_dir:
            work = args.seed_dir + '.tmp'
            os.makedirs(work, mode=0o755)
            os.chmod(work, 0o755)
            files_root = os.path.join(work, 'files')
        timings = seed(c, args, storage, files_root, log)
        if args.seed_dir:
            # the database as the server has it now (the backup API copies a consistent state), and what it was made against
            made = {'key': args.seed_key, 'made': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                    'seed_seconds': round(time.monotonic() - t0, 2), 'issuer': args.issuer, 'endpoints': endpoints(storage),
                    'huge': args.huge, **timings}
            src, dst = sqlite3.connect(os.path.join(args.run_dir, 'rucio.db')), sqlite3.connect(os.path.join(work, 'rucio.db'))
            with dst:
                src.backup(dst)
            src.close()
            dst.close()
            with open(os.path.join(work, 'seed.json'), 'w') as f:
                json.dump(made, f, indent=2)
                f.write('\n')
            os.rename(work, args.seed_dir)
            seed_dir = args.seed_dir
            log(f'kept the seed in {seed_dir}')
    links = link_files(storage, seed_dir) if storage and seed_dir else []

    ends = endpoints(storage)
    info = json.loads(args.info)
    info.update({
        'url': args.url,
        'root': {'account': 'root', 'auth_type': 'userpass', 'username': args.username, 'password': args.password},
        'accounts': {name: {'identity': f'SUB={name}, ISS={args.issuer}', 'scope': f'user.{name}'} for name in ('alice', 'bob')},
        'issuer': args.issuer,
        'audience': args.audience,
        'required_scope': args.scope_claim,
        'scopes': [SCOPE, 'user.alice', 'user.bob'],
        'rses': describe_rses(ends),
        'rse_expression': 'SITE-A_DISK|SITE-B_DISK',
        'user_writable_rses': ['SITE-A_SCRATCHDISK'],
        'datasets': dataset_facts(args.huge),
        'containers': {f'{SCOPE}:cont.mc': [f'{SCOPE}:ds.mc.2026', f'{SCOPE}:ds.mc.2027']},
        'big_dataset': f'{SCOPE}:ds.big',
        'huge_dataset': f'{SCOPE}:ds.huge' if args.huge else None,
        'open_datasets': [f'{USER_SCOPE}:ds.alice.ntuples'],
        'storage': ({'servers': [i['name'] for i in storage['instances']], 'files_written': timings['files_written'],
                     'issuer': storage['issuer'], 'ca': storage['ca'], 'linked': links} if storage else None),
        'seed': ({'key': args.seed_key, 'dir': seed_dir, 'reused': bool(args.reuse), 'made': made['made'],
                  'seed_seconds': made['seed_seconds']} if seed_dir else None),
        'bootstrap_seconds': round(time.monotonic() - t0, 2),
        'big_dataset_seconds': timings['big_dataset_seconds'],
        'huge_dataset_seconds': timings['huge_dataset_seconds'],
    })
    tmp = os.path.join(args.run_dir, 'rucio.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(info, f, indent=2)
        f.write('\n')
    os.replace(tmp, os.path.join(args.run_dir, 'rucio.json'))
    log('done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
