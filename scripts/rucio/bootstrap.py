"""Bootstraps the test data of a freshly started Rucio server, through the server itself.

Run by `scripts/rucio-server.sh start` with the server venv's python: every object is made with
the rucio client library (REST calls to the running server) as root with userpass, so the data
went through the same API paths the gateway uses. Writes <run-dir>/rucio.json at the end.

Deterministic: names, sizes and adler32 checksums derive from the file names only.
"""
import argparse
import json
import os
import pwd
import sys
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
# depth 1000)", a 500 DatabaseException); 999 fails too, 990 works.
CHUNK = 500
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
    args = ap.parse_args()
    storage = None
    if args.storage:
        global ON_STORAGE
        ON_STORAGE = True
        with open(args.storage) as f:
            storage = json.load(f)

    t0 = time.monotonic()
    c = Client(rucio_host=args.url, auth_host=args.url, account='root', auth_type='userpass',
               creds={'username': args.username, 'password': args.password}, timeout=120)
    log = lambda msg: print(f'[rucio-bootstrap] {time.monotonic() - t0:6.2f}s {msg}', file=sys.stderr, flush=True)  # noqa: E731

    # --- accounts, OIDC identities (exactly "SUB=<sub>, ISS=<issuer>"), scopes
    accounts = {}
    for name in ('alice', 'bob'):
        c.add_account(name, 'USER', f'{name}@af.test')
        identity = f'SUB={name}, ISS={args.issuer}'
        c.add_identity(account=name, identity=identity, authtype='OIDC', email=f'{name}@af.test', default=True)
        c.add_scope(name, f'user.{name}')
        accounts[name] = {'identity': identity, 'scope': f'user.{name}'}
    c.add_scope('root', SCOPE)
    log('accounts alice, bob (OIDC identities), scopes user.alice, user.bob, data26')

    # --- RSEs: deterministic, davs (https-like, port 443) and root protocols, attributes
    rses = {}
    for rse, (site, rse_type, davs_host, root_host, path) in RSES.items():
        davs_port, root_port = 443, 1094
        if storage:
            # SITE-A's RSEs on the first server, SITE-B's on the second: two real storages
            server = storage['instances'][0 if site == 'SITE-A' else 1]
            davs_host = root_host = '127.0.0.1'
            davs_port, root_port = server['http_port'], server['root_port']
        c.add_rse(rse, deterministic=True)
        for key, value in (('site', site), ('type', rse_type), ('tier', 2), ('cloud', 'AF'),
                           ('lfn2pfn_algorithm', 'hash')):
            c.add_rse_attribute(rse, key, value)
        c.add_protocol(rse, protocol('davs', davs_host, davs_port, f'/{path}/', 'rucio.rse.protocols.gfal.Default', 1))
        c.add_protocol(rse, protocol('root', root_host, root_port, f'//{path}/', 'rucio.rse.protocols.xrootd.Default', 2))
        for account in ('root', 'alice', 'bob'):
            c.set_local_account_limit(account, rse, ACCOUNT_LIMIT)
        rses[rse] = {'site': site, 'type': rse_type, 'davs': f'davs://{davs_host}:{davs_port}/{path}/',
                     'root': f'root://{root_host}:{root_port}//{path}/'}
        if storage:
            rses[rse]['data_dir'] = server['data_dir']
    c.add_distance('SITE-A_DISK', 'SITE-B_DISK', {'distance': 1})
    c.add_distance('SITE-B_DISK', 'SITE-A_DISK', {'distance': 1})
    log('RSEs SITE-A_DISK, SITE-B_DISK, SITE-A_SCRATCHDISK (davs + root), account limits')

    written = {'files': 0}

    def put_on_storage(rse, part):
        # where Rucio says each file is (its root PFN: root://host:port//path), written in the server's data directory as its account
        # (asked 40 at a time: the LFNs travel in the URL, whose line gunicorn caps at 4 KiB)
        pfns = {}
        for few in chunks(part, 40):
            pfns.update(c.lfns2pfns(rse, [f"{f['scope']}:{f['name']}" for f in few], scheme='root', operation='read'))
        owner = pwd.getpwnam(storage['user'])
        for f in part:
            path = pfns[f"{f['scope']}:{f['name']}"].split('//', 2)[2]
            target = os.path.join(rses[rse]['data_dir'], path.lstrip('/'))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'wb') as out:
                out.write(file_content(f['name']))
            d = os.path.dirname(target)
            while d.startswith(rses[rse]['data_dir'] + '/'):
                os.chown(d, owner.pw_uid, owner.pw_gid)
                d = os.path.dirname(d)
            os.chown(target, owner.pw_uid, owner.pw_gid)
            written['files'] += 1

    def dataset(scope, name, files, rse_list, meta=None):
        c.add_dataset(scope, name)
        first, *others = rse_list
        for part in chunks(files, CHUNK):
            c.add_files_to_dataset(scope, name, part, rse=first)  # registers the replicas on `first`
            for rse in others:
                c.add_replicas(rse, [{k: f[k] for k in ('scope', 'name', 'bytes', 'adler32')} for f in part])
            if storage:
                for rse in rse_list:
                    put_on_storage(rse, part)
        if meta:
            c.set_metadata_bulk(scope, name, meta)

    datasets = {}
    # ds.small: 5 files with replicas on both RSEs, and a root rule on SITE-A_DISK
    small = [file_did(SCOPE, f'file.small.{i:04d}.root') for i in range(1, 6)]
    dataset(SCOPE, 'ds.small', small, ['SITE-A_DISK', 'SITE-B_DISK'],
            {'datatype': 'NTUP', 'project': 'data26', 'run_number': 260001, 'stream_name': 'physics_Main'})
    c.add_replication_rule([{'scope': SCOPE, 'name': 'ds.small'}], 1, 'SITE-A_DISK')
    datasets[f'{SCOPE}:ds.small'] = {'files': len(small), 'rses': ['SITE-A_DISK', 'SITE-B_DISK'], 'datatype': 'NTUP'}

    # ds.mc.2026 / ds.mc.2027 (wildcard ds.mc.*), in container cont.mc
    for year, rse, datatype in ((2026, 'SITE-A_DISK', 'AOD'), (2027, 'SITE-B_DISK', 'DAOD')):
        name = f'ds.mc.{year}'
        files = [file_did(SCOPE, f'file.mc.{year}.{i:04d}.root') for i in range(1, 4)]
        dataset(SCOPE, name, files, [rse], {'datatype': datatype, 'project': f'mc{year % 100}'})
        datasets[f'{SCOPE}:{name}'] = {'files': len(files), 'rses': [rse], 'datatype': datatype}
    c.add_container(SCOPE, 'cont.mc')
    c.add_datasets_to_container(SCOPE, 'cont.mc', [{'scope': SCOPE, 'name': 'ds.mc.2026'}, {'scope': SCOPE, 'name': 'ds.mc.2027'}])
    c.set_metadata(SCOPE, 'cont.mc', 'datatype', 'AOD')
    log('ds.small, ds.mc.2026, ds.mc.2027, cont.mc')

    # user.alice: a dataset of alice's, with a rule of hers on SITE-A_DISK
    alice_files = [file_did(USER_SCOPE, f'user.alice.ntuple.{i:04d}.root') for i in range(1, 4)]
    dataset(USER_SCOPE, 'ds.alice.ntuples', alice_files, ['SITE-A_DISK'], {'datatype': 'NTUP'})
    c.add_replication_rule([{'scope': USER_SCOPE, 'name': 'ds.alice.ntuples'}], 1, 'SITE-A_DISK', account='alice')
    datasets[f'{USER_SCOPE}:ds.alice.ntuples'] = {'files': len(alice_files), 'rses': ['SITE-A_DISK'], 'datatype': 'NTUP'}

    # ds.big: 20,000 files on SITE-A_DISK, registered in chunks of CHUNK
    t_big = time.monotonic()
    big = [file_did(SCOPE, f'file.big.{i:06d}.root') for i in range(1, BIG_FILES + 1)]
    dataset(SCOPE, 'ds.big', big, ['SITE-A_DISK'], {'datatype': 'AOD', 'project': 'data26'})
    big_seconds = round(time.monotonic() - t_big, 2)
    datasets[f'{SCOPE}:ds.big'] = {'files': len(big), 'rses': ['SITE-A_DISK'], 'datatype': 'AOD'}
    log(f'ds.big: {BIG_FILES} files in {big_seconds}s')

    # published data is closed (Rucio then fills the datasets' length and bytes); user.alice's stays
    # open, for registering outputs into it
    for name in ('ds.small', 'ds.mc.2026', 'ds.mc.2027', 'ds.big'):
        c.close(SCOPE, name)
    log('data26 datasets closed')

    info = json.loads(args.info)
    info.update({
        'url': args.url,
        'root': {'account': 'root', 'auth_type': 'userpass', 'username': args.username, 'password': args.password},
        'accounts': accounts,
        'issuer': args.issuer,
        'audience': args.audience,
        'required_scope': args.scope_claim,
        'scopes': [SCOPE, 'user.alice', 'user.bob'],
        'rses': rses,
        'rse_expression': 'SITE-A_DISK|SITE-B_DISK',
        'user_writable_rses': ['SITE-A_SCRATCHDISK'],
        'datasets': datasets,
        'containers': {f'{SCOPE}:cont.mc': [f'{SCOPE}:ds.mc.2026', f'{SCOPE}:ds.mc.2027']},
        'big_dataset': f'{SCOPE}:ds.big',
        'open_datasets': [f'{USER_SCOPE}:ds.alice.ntuples'],
        'storage': ({'servers': [i['name'] for i in storage['instances']], 'files_written': written['files'],
                     'issuer': storage['issuer'], 'ca': storage['ca']} if storage else None),
        'bootstrap_seconds': round(time.monotonic() - t0, 2),
        'big_dataset_seconds': big_seconds,
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
