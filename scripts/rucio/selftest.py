"""The REST calls the gateway's Rucio module makes, against a server started by rucio-server.sh.

Run by `scripts/rucio-server.sh selftest` with the server venv's python (it has `requests`). Gets
real tokens from the repo's test OIDC provider (client credentials: sub = client id, aud
`af-gateway`), exchanges them (RFC 8693, the `af-gateway` client) for audience `rucio`, and calls
Rucio with the JWT as X-Rucio-Auth-Token. Prints status, headers and body excerpts of each call and
fails (exit 1) when a fact the gateway relies on does not hold.
"""
import argparse
import base64
import json
import sys
import threading
import time

import requests

EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
ACCESS = 'urn:ietf:params:oauth:token-type:access_token'
failures = []


def claims(jwt):
    p = jwt.split('.')[1]
    return json.loads(base64.urlsafe_b64decode(p + '=' * (-len(p) % 4)))


def check(cond, what):
    print(f'  {"ok  " if cond else "FAIL"} {what}')
    if not cond:
        failures.append(what)


def show(title, r, max_body=600):
    print(f'\n== {title}')
    print(f'  {r.request.method} {r.request.path_url} -> {r.status_code} {r.reason}')
    keep = ('Content-Type', 'Location', 'ExceptionClass', 'ExceptionMessage', 'Transfer-Encoding', 'Content-Length')
    for k in keep:
        if k in r.headers:
            print(f'  {k}: {r.headers[k][:200]}')
    body = r.text
    print('  body: ' + (body[:max_body] + (f'... ({len(body)} chars)' if len(body) > max_body else '')).replace('\n', '\n        '))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--rucio-json', required=True)
    ap.add_argument('--issuer', required=True)
    ap.add_argument('--ttl', type=int, required=True)
    args = ap.parse_args()
    info = json.load(open(args.rucio_json))
    url, iss = info['url'], args.issuer
    secrets = {'alice': 'alice-secret', 'bob': 'bob-secret'}

    def cc_token(client, scope='openid storage.read:/'):
        r = requests.post(f'{iss}/token', auth=(client, secrets[client]),
                          data={'grant_type': 'client_credentials', 'scope': scope, 'resource': 'urn:af-gateway'})
        r.raise_for_status()
        return r.json()['access_token']

    def exchanged(client, audience='rucio'):
        r = requests.post(f'{iss}/token', auth=('af-gateway', 'af-gateway-secret'),
                          data={'grant_type': EXCHANGE, 'subject_token': cc_token(client),
                                'subject_token_type': ACCESS, 'audience': audience})
        r.raise_for_status()
        return r.json()['access_token']

    def H(token, **extra):
        return {'X-Rucio-Auth-Token': token, **extra}

    def add_rule(token, did, account, rse_expression, **more):
        """POST /rules/ for one copy of scope:name with a lifetime of an hour, as the holder of token."""
        scope, name = did.split(':')
        return requests.post(f'{url}/rules/', headers=H(token), json={
            'dids': [{'scope': scope, 'name': name}], 'account': account, 'copies': 1,
            'rse_expression': rse_expression, 'lifetime': 3600, **more})

    print(f'Rucio {requests.get(url + "/ping").json()["version"]} at {url}; issuer {iss}; '
          f'expected audience {info["audience"]!r}, scope {info["required_scope"]!r}')
    print(f'bootstrap: {info["bootstrap_seconds"]}s total, ds.big (20000 files) {info["big_dataset_seconds"]}s; '
          f'server start {info["start_seconds"]}s')

    # --- tokens
    raw = cc_token('alice')
    print('\nalice client-credentials token claims:', json.dumps({k: v for k, v in claims(raw).items() if k != 'jti'}))
    r = requests.get(f'{url}/accounts/whoami', headers=H(raw), allow_redirects=False)
    show('raw provider token (aud af-gateway) as X-Rucio-Auth-Token', r)
    check(r.status_code == 401 and r.headers.get('ExceptionClass') == 'CannotAuthenticate',
          'a token without the expected audience is refused with 401 CannotAuthenticate')

    alice = exchanged('alice')
    print('\nexchanged alice token claims:', json.dumps({k: v for k, v in claims(alice).items() if k != 'jti'}))
    expire_used = alice               # used now, reused after expiry (then known to Rucio's DB)
    expire_unused = exchanged('alice')  # never shown to Rucio before it expires
    expiry = max(claims(expire_used)['exp'], claims(expire_unused)['exp'])

    r = requests.get(f'{url}/accounts/whoami', headers=H(alice), allow_redirects=False)
    show('GET /accounts/whoami (no redirect following)', r)
    check(r.status_code == 303, 'whoami answers 303 See Other to the account')
    r = requests.get(f'{url}/accounts/whoami', headers=H(alice))
    show('GET /accounts/whoami (redirect followed)', r)
    check(r.status_code == 200 and r.json().get('account') == 'alice', 'whoami -> account alice')

    # --- search with wildcard, type, metadata filter
    tok = exchanged('alice')
    r = requests.get(f'{url}/dids/data26/dids/search', params={'type': 'dataset', 'name': 'ds.mc.*'}, headers=H(tok))
    show('GET /dids/data26/dids/search?type=dataset&name=ds.mc.*', r)
    names = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    check(r.status_code == 200 and sorted(names) == ['ds.mc.2026', 'ds.mc.2027'],
          'search: NDJSON, one JSON string (the name) per line: ds.mc.2026, ds.mc.2027')
    r = requests.get(f'{url}/dids/data26/dids/search', params={'type': 'dataset', 'name': 'ds.mc.*', 'long': '1'}, headers=H(tok))
    show('GET /dids/data26/dids/search?type=dataset&name=ds.mc.*&long=1', r)
    check(r.status_code == 200 and all('did_type' in json.loads(x) for x in r.text.splitlines() if x.strip()),
          'search long=1: one JSON object per line (scope, name, did_type, bytes, length)')
    r = requests.get(f'{url}/dids/data26/dids/search', params={'type': 'all', 'name': '*', 'datatype': 'AOD'}, headers=H(tok))
    show('GET /dids/data26/dids/search?type=all&name=*&datatype=AOD (metadata filter)', r)
    check(r.status_code == 200 and 'ds.mc.2026' in r.text and 'ds.mc.2027' not in r.text, 'metadata filter datatype=AOD')
    r = requests.get(f'{url}/dids/data26/dids/search', params={'type': 'container', 'name': 'cont.*'}, headers=H(tok))
    show('GET /dids/data26/dids/search?type=container&name=cont.*', r)
    r = requests.get(f'{url}/dids/data26/cont.mc/dids', headers=H(tok))
    show('GET /dids/data26/cont.mc/dids (content of the container)', r)
    check(r.status_code == 200 and r.text.count('\n') >= 2, 'container content: NDJSON of its datasets')
    r = requests.get(f'{url}/dids/data26/ds.small', headers=H(tok))
    show('GET /dids/data26/ds.small (DID details)', r)
    r = requests.get(f'{url}/dids/data26/ds.small/meta', headers=H(tok))
    show('GET /dids/data26/ds.small/meta', r, 400)
    check(r.status_code == 200 and r.json().get('datatype') == 'NTUP', 'metadata datatype NTUP')
    r = requests.get(f'{url}/scopes/', headers=H(tok))
    show('GET /scopes/', r)

    # --- files, replicas
    r = requests.get(f'{url}/dids/data26/ds.small/files', headers=H(tok))
    show('GET /dids/data26/ds.small/files', r)
    files = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    check(r.status_code == 200 and len(files) == 5 and all(f.get('adler32') and f.get('bytes') for f in files),
          'files: 5 NDJSON lines with scope, name, bytes, adler32')
    for scheme in ('davs', 'root'):
        r = requests.post(f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'),
                          json={'dids': [{'scope': 'data26', 'name': 'ds.small'}], 'schemes': [scheme]})
        show(f'POST /replicas/list schemes=["{scheme}"]', r, 900)
        reps = [json.loads(x) for x in r.text.splitlines() if x.strip()]
        pfns = [p for rep in reps for p in rep.get('pfns', {})]
        check(r.status_code == 200 and len(reps) == 5 and pfns and all(p.startswith(f'{scheme}://') for p in pfns)
              and all(len(rep['rses']) == 2 for rep in reps),
              f'replicas: 5 files, each on 2 RSEs, every PFN starts with {scheme}://')
    r = requests.post(f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'),
                      json={'dids': [{'scope': 'data26', 'name': 'ds.small'}], 'schemes': ['davs'],
                            'rse_expression': 'SITE-B_DISK', 'sort': 'random'})
    reps = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    print(f'\n== POST /replicas/list davs rse_expression=SITE-B_DISK -> {r.status_code}; rses per file: '
          f'{sorted({tuple(x["rses"]) for x in reps})}')
    check(r.status_code == 200 and all(list(x['rses']) == ['SITE-B_DISK'] for x in reps), 'rse_expression restricts replicas')

    # --- rules
    r = add_rule(tok, 'data26:ds.small', 'alice', 'SITE-B_DISK', grouping='DATASET')
    show('POST /rules/ (alice, data26:ds.small -> SITE-B_DISK, lifetime 3600)', r)
    check(r.status_code == 201, 'rule created: 201 with a JSON list of rule ids')
    if r.status_code == 201:
        rid = r.json()[0]
        r = requests.get(f'{url}/rules/{rid}', headers=H(tok))
        show(f'GET /rules/{rid}', r, 500)
        check(r.status_code == 200 and r.json()['state'] == 'OK', 'rule on existing replicas: state OK at once')
    r = add_rule(tok, 'data26:ds.mc.2026', 'alice', 'SITE-B_DISK')
    if r.status_code == 201:
        rid = r.json()[0]
        r = requests.get(f'{url}/rules/{rid}', headers=H(tok))
        st = r.json()
        print(f'\n== rule needing transfers (ds.mc.2026 only on SITE-A_DISK -> SITE-B_DISK): {rid} state {st["state"]} '
              f'locks ok/replicating/stuck {st["locks_ok_cnt"]}/{st["locks_replicating_cnt"]}/{st["locks_stuck_cnt"]}')
        check(st['state'] == 'REPLICATING', 'a rule needing transfers stays REPLICATING (no daemons run)')
    r = requests.get(f'{url}/dids/data26/ds.small/rules', headers=H(tok))
    show('GET /dids/data26/ds.small/rules', r, 300)
    check(r.status_code == 200 and r.text.count('\n') == 2, 'rules of a DID: NDJSON, root + alice')

    # --- errors
    r = requests.get(f'{url}/dids/data26/no.such.dataset', headers=H(tok))
    show('GET /dids/data26/no.such.dataset (unknown DID)', r)
    check(r.status_code == 404 and r.json().get('ExceptionClass') == 'DataIdentifierNotFound', 'unknown DID: 404 DataIdentifierNotFound')
    r = requests.get(f'{url}/dids/data26/no.such.dataset/files', headers=H(tok))
    show('GET /dids/data26/no.such.dataset/files', r)
    r = requests.post(f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'),
                      json={'dids': [{'scope': 'data26', 'name': 'no.such.dataset'}], 'schemes': ['davs']})
    show('POST /replicas/list for an unknown DID', r)
    r = requests.get(f'{url}/dids/nosuchscope/dids/search', params={'type': 'dataset', 'name': '*'}, headers=H(tok))
    show('GET /dids/nosuchscope/dids/search (unknown scope)', r)

    bob = exchanged('bob')
    r = requests.get(f'{url}/accounts/whoami', headers=H(bob))
    print(f'\n== bob whoami -> {r.status_code} {r.json().get("account")}')
    r = add_rule(bob, 'user.alice:ds.alice.ntuples', 'bob', 'SITE-B_DISK')
    show('POST /rules/ as bob on user.alice:ds.alice.ntuples', r)
    # Rucio 41.5.1's POST /rules/ maps no AccessDenied to 401 (other routes do): it answers 500
    check(r.status_code in (401, 500) and r.json().get('ExceptionClass') == 'AccessDenied',
          f'bob in alice\'s scope: AccessDenied (status {r.status_code})')
    r = add_rule(bob, 'data26:ds.small', 'alice', 'SITE-A_DISK')
    show('POST /rules/ as bob for account alice', r)
    check(r.status_code in (401, 500) and r.json().get('ExceptionClass') == 'AccessDenied',
          f'bob for account alice: AccessDenied (status {r.status_code})')
    r = add_rule(tok, 'data26:ds.small', 'alice', 'NO_SUCH_RSE')
    show('POST /rules/ to an RSE expression matching nothing', r)
    r = add_rule(tok, 'data26:ds.small', 'alice', 'SITE-B_DISK')
    show('POST /rules/ duplicate of an existing rule', r)

    # output registration: alice registers files she wrote and attaches them to her open dataset
    stamp = int(time.time())
    outs = [{'scope': 'user.alice', 'name': f'user.alice.output.{stamp}.{i}.root', 'bytes': 1234 + i, 'adler32': '0badcafe'}
            for i in range(3)]
    r = requests.post(f'{url}/replicas/', headers=H(tok), json={'rse': 'SITE-A_DISK', 'files': [outs[0]]})
    show('POST /replicas/ as alice on SITE-A_DISK (add replicas)', r)
    check(r.json().get('ExceptionClass') == 'AccessDenied', f'alice may not add replicas on SITE-A_DISK: AccessDenied (status {r.status_code})')
    r = requests.post(f'{url}/replicas/', headers=H(tok), json={'rse': 'SITE-A_SCRATCHDISK', 'files': [outs[0]]})
    show('POST /replicas/ as alice on SITE-A_SCRATCHDISK', r)
    check(r.status_code == 201, 'alice adds a replica on SITE-A_SCRATCHDISK: 201')
    r = requests.post(f'{url}/dids/user.alice/ds.alice.ntuples/dids', headers=H(tok), json={'dids': [{'scope': 'user.alice', 'name': outs[0]['name']}]})
    show('POST /dids/user.alice/ds.alice.ntuples/dids (attach the registered file)', r)
    check(r.status_code == 201, 'attach to her open dataset: 201')
    r = requests.post(f'{url}/dids/user.alice/ds.alice.ntuples/dids', headers=H(tok), json={'dids': [outs[1]], 'rse': 'SITE-A_SCRATCHDISK'})
    show('POST /dids/user.alice/ds.alice.ntuples/dids with "rse" (register file + replica + attach in one call)', r)
    check(r.status_code == 201, 'register + attach in one call: 201')
    r = requests.post(f'{url}/dids/user.alice/ds.alice.ntuples/dids', headers=H(tok), json={'dids': [outs[2]], 'rse': 'SITE-A_DISK'})
    print(f'\n== the same with "rse": "SITE-A_DISK" -> {r.status_code} {r.text[:150]} (attach checks only scope ownership)')
    r = requests.post(f'{url}/dids/data26/ds.small/dids', headers=H(tok), json={'dids': [{'scope': 'user.alice', 'name': outs[0]['name']}]})
    show('POST /dids/data26/ds.small/dids (attach into a closed dataset of root\'s scope)', r)
    r = requests.post(f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'),
                      json={'dids': [{'scope': 'user.alice', 'name': 'ds.alice.ntuples'}], 'schemes': ['davs']})
    show('POST /replicas/list of alice\'s dataset after the registration', r, 300)
    check(r.status_code == 200 and len(r.text.splitlines()) == 6, 'her dataset now lists 6 files with replicas')

    tampered = alice[:-4] + ('AAAA' if not alice.endswith('AAAA') else 'BBBB')
    r = requests.get(f'{url}/accounts/whoami', headers=H(tampered), allow_redirects=False)
    show('tampered signature', r, 300)
    check(r.status_code == 401, 'tampered token: 401')
    r = requests.get(f'{url}/accounts/whoami', allow_redirects=False)
    show('no token at all', r, 300)

    # --- the 20k-file dataset, streamed
    tok = exchanged('alice')
    def timed(title, call, max_lines=None):
        t0 = time.monotonic()
        r = call()
        first, lines, size, sample = None, 0, 0, ''
        for line in r.iter_lines(chunk_size=65536):
            if first is None:
                first = time.monotonic() - t0
                sample = line[:300].decode()
            if line:
                lines += 1
                size += len(line) + 1
            if max_lines and lines >= max_lines:
                break
        total = time.monotonic() - t0
        r.close()
        print(f'\n== {title}: {r.status_code}, {r.headers.get("Content-Type")}, Transfer-Encoding '
              f'{r.headers.get("Transfer-Encoding")}; first line after {first:.3f}s, {lines} lines '
              f'({size / 1e6:.1f} MB) in {total:.2f}s\n  first line: {sample}')
        return r, lines, total

    big = [{'scope': 'data26', 'name': 'ds.big'}]
    r, lines, _ = timed('GET /dids/data26/ds.big/files',
                        lambda: requests.get(f'{url}/dids/data26/ds.big/files', headers=H(tok), stream=True))
    check(r.status_code == 200 and lines == 20000, 'ds.big files: 20000 NDJSON lines')
    # while it streams, another request (as one more gateway user would make): does it wait?
    side = {}

    def probe():
        time.sleep(0.8)
        t = time.monotonic()
        side['status'] = requests.get(f'{url}/ping').status_code
        side['seconds'] = time.monotonic() - t

    th = threading.Thread(target=probe)
    th.start()
    r, lines, _ = timed('POST /replicas/list ds.big davs sort=random', lambda: requests.post(
        f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'), stream=True,
        json={'dids': big, 'schemes': ['davs'], 'sort': 'random'}))
    th.join()
    check(r.status_code == 200 and lines == 20000, 'ds.big replicas (sort=random): 20000 NDJSON lines')
    print(f'  a GET /ping sent 0.8s into that stream answered {side.get("status")} after {side.get("seconds", 0):.2f}s '
          f'({info.get("threads", 1)} thread(s) in the one worker)')
    # without `sort` Rucio sorts each file's PFNs by 'geoip': per file it looks for
    # /tmp/GeoLite2-City.mmdb, fails (no licence key, so no download is tried) and logs two lines
    r, lines, secs = timed('POST /replicas/list ds.big davs, default sort (geoip), first 2000 lines', lambda: requests.post(
        f'{url}/replicas/list', headers=H(tok, Accept='application/x-json-stream'), stream=True,
        json={'dids': big, 'schemes': ['davs']}), max_lines=2000)
    print(f'  -> default sort: {lines / secs:.0f} files/s, i.e. ~{20000 * secs / lines:.0f}s for the 20000 files')

    # --- expiry: a token Rucio saw while valid, and one it never saw
    wait = expiry - time.time() + 1
    if wait > 0:
        print(f'\n(waiting {wait:.0f}s for the {args.ttl}s tokens to expire)')
        time.sleep(wait)
    r = requests.get(f'{url}/accounts/whoami', headers=H(expire_used), allow_redirects=False)
    show('expired token, used before while valid', r, 300)
    check(r.status_code == 401 and r.headers.get('ExceptionClass') == 'CannotAuthenticate', 'expired (seen) token: 401 CannotAuthenticate')
    r = requests.get(f'{url}/accounts/whoami', headers=H(expire_unused), allow_redirects=False)
    show('expired token, never seen before', r, 300)
    check(r.status_code == 401 and r.headers.get('ExceptionClass') == 'CannotAuthenticate', 'expired (new) token: 401 CannotAuthenticate')

    print(f'\n{len(failures)} failed' + (': ' + '; '.join(failures) if failures else ''))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
