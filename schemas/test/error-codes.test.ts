// error.json lists every error code the gateway sends, and only those: the gateway's sources are
// read for the codes they put in error answers (AppError and its helpers, the error handler's
// mapping of Fastify's own errors, the few answers written by hand) and compared with the list.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const src = join(root, '..', 'gateway-server', 'src');
const errorSchema = JSON.parse(readFileSync(join(root, 'json', 'error.json'), 'utf8')) as {
  $defs: { code: { oneOf: { const: string; description?: string }[] }; rucio_code: { pattern: string } };
};
const listed = errorSchema.$defs.code.oneOf.map((c) => c.const);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The top-level arguments of the call whose '(' is at `open`, as source text (strings and nesting respected). */
function callArguments(text: string, open: number): string[] {
  const args: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "'" || ch === '"' || ch === '`') {
      // skip the string (template literals may nest ${…}; their braces are balanced, so skipping to
      // the closing backtick at the same nesting is enough for the code positions looked at here)
      let j = i + 1;
      let inner = 0;
      while (j < text.length) {
        const c = text[j]!;
        if (c === '\\') j++;
        else if (ch === '`' && c === '$' && text[j + 1] === '{') inner++;
        else if (ch === '`' && c === '}' && inner > 0) inner--;
        else if (c === ch && inner === 0) break;
        j++;
      }
      i = j;
      continue;
    }
    if (ch === '(' || ch === '[' || ch === '{') depth++;
    else if (ch === ')' || ch === ']' || ch === '}') {
      depth--;
      if (depth === 0) {
        const last = text.slice(start, i).trim();
        if (last || !args.length) args.push(last); // (a trailing comma ends the list, it adds no argument)
        return args;
      }
    } else if (ch === ',' && depth === 1) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  return args;
}

const LITERAL = /^'([a-z][a-z0-9_]*)'$/;
const lineOf = (text: string, at: number) => text.slice(0, at).split('\n').length;

/** Each call that makes an error answer, and which of its arguments is the code. */
const CALLS: { pattern: RegExp; arg: number }[] = [
  { pattern: /new AppError\(/g, arg: 1 },
  { pattern: /\bsuper\((?=\d)/g, arg: 1 }, // a subclass of AppError
  { pattern: /\b(?:unprocessable|conflict)\(/g, arg: 1 },
  { pattern: /\bthis\.refuse\(/g, arg: 1 },
  { pattern: /(?<!function )\brefuseUpgrade\(/g, arg: 2 },
];

function codesSent() {
  const sent = new Map<string, string[]>();
  const dynamic: string[] = [];
  const note = (code: string, where: string) => sent.set(code, [...(sent.get(code) ?? []), where]);
  for (const file of sources(src)) {
    const text = readFileSync(file, 'utf8');
    const rel = relative(src, file);
    for (const { pattern, arg } of CALLS) {
      for (const m of text.matchAll(pattern)) {
        const args = callArguments(text, m.index + m[0].length - 1);
        const code = args[arg];
        if (code === undefined) continue; // e.g. refuseUpgrade(socket, err): the error carries its code
        const where = `${rel}:${lineOf(text, m.index)}`;
        const lit = LITERAL.exec(code);
        if (lit) note(lit[1]!, where);
        else dynamic.push(`${rel}: ${code}`);
      }
    }
    // Defaults of code parameters, and the error handler's assignments: every literal on the right.
    for (const m of text.matchAll(/\b(?:code|error)(?:\??:\s*[A-Za-z|' _]+)?\s=\s([^;\n]+)/g)) {
      for (const lit of m[1]!.matchAll(/'([a-z][a-z0-9_]*)'/g)) note(lit[1]!, `${rel}:${lineOf(text, m.index)}`);
    }
    // Error bodies written by hand: { error: …, code: 'x' }.
    for (const m of text.matchAll(/\bcode: '([a-z][a-z0-9_]*)'/g)) note(m[1]!, `${rel}:${lineOf(text, m.index)}`);
  }
  return { sent, dynamic };
}

describe('error codes', () => {
  const { sent, dynamic } = codesSent();

  it('every code the gateway sends is listed in error.json', () => {
    const rucio = new RegExp(errorSchema.$defs.rucio_code.pattern);
    const unlisted = [...sent].filter(([code]) => !listed.includes(code) && !rucio.test(code)).map(([code, where]) => `${code} (${where.join(', ')})`);
    expect(unlisted).toEqual([]);
  });

  it('every code listed in error.json is sent somewhere', () => {
    expect(listed.filter((code) => !sent.has(code))).toEqual([]);
  });

  it('lists each code once, with a description', () => {
    expect(new Set(listed).size).toBe(listed.length);
    expect(errorSchema.$defs.code.oneOf.filter((c) => !c.description).map((c) => c.const)).toEqual([]);
  });

  it('knows every place a code is not a literal (each typed as a listed code, or a Rucio one)', () => {
    // A new one here: make its type ErrorCode (tsc then checks its values) and add it to this list.
    expect(dynamic.sort()).toEqual(
      [
        'api/upgrade.ts: code!', // refuseUpgrade's overload takes an ErrorCode
        'auth/oidc-authenticator.ts: error', // refuse(description, error: one of three codes)
        'errors.ts: code', // unprocessable / conflict: code: ErrorCode
        'errors.ts: code',
        'rucio/rucio-client.ts: code', // rucio_<Rucio's exception class>
      ].sort(),
    );
  });

  it('finds the codes of the usual ways to send one (a sanity check of the scan itself)', () => {
    for (const code of [
      'not_found',
      'forbidden',
      'invalid_request',
      'body_too_large',
      'malformed_body',
      'internal',
      'invalid_token',
      'cross_origin',
      'standby',
      'run_active',
      'invalid_workflow',
    ]) {
      expect(sent.has(code), code).toBe(true);
    }
  });
});
