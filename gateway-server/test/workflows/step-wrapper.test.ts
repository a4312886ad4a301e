// The step wrapper is a template (src/workflows/step-wrapper.sh) filled with shell-quoted values:
// the script is the one the engine wrote before the template existed, paths with quotes and spaces
// stay one word, and run by /bin/sh it logs, runs the command in the step's directory and leaves
// the exit code for the engine.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fillTemplate, shellQuote, stepWrapper } from '../../src/workflows/step-wrapper.js';
import { stepFiles } from '../../src/workflows/step-files.js';

const run = promisify(execFile);

describe('step wrapper', () => {
  it('is the script the engine wrote inline before', () => {
    const files = stepFiles('/w/r1/fit');
    const text = stepWrapper({ header: 'AF Gateway: step fit of workflow run r1, attempt 2', workdir: '/w/r1/fit', interpreter: 'python3 -u', files });
    expect(text).toBe(
      [
        '#!/bin/sh',
        '# AF Gateway: step fit of workflow run r1, attempt 2',
        "exec >>'/w/r1/fit/.af/log' 2>&1",
        "echo '--- AF Gateway: step fit of workflow run r1, attempt 2 ---'",
        "cd '/w/r1/fit' || exit 97",
        "python3 -u '/w/r1/fit/.af/command'",
        'code=$?',
        "printf '%s\\n' \"$code\" > '/w/r1/fit/.af/exit-code.part' && mv '/w/r1/fit/.af/exit-code.part' '/w/r1/fit/.af/exit-code'",
        'exit "$code"',
        '',
      ].join('\n'),
    );
  });

  it('quotes every path as one word and keeps the header on its line', () => {
    expect(shellQuote("it's $HOME `x`")).toBe("'it'\\''s $HOME `x`'");
    const text = stepWrapper({ header: 'a\nrm -rf /', workdir: "/w/it's here", interpreter: 'sh', files: stepFiles("/w/it's here") });
    expect(text.split('\n')[1]).toBe('# a rm -rf /');
    expect(text).toContain("cd '/w/it'\\''s here' || exit 97");
  });

  it("a value naming another placeholder stays that text: values are never filled in again (mallory's @INTERPRETER@ in a path)", () => {
    expect(fillTemplate('@A@ @B@', { A: '@B@' }, { B: 'raw' })).toBe("'@B@' raw");
    const text = stepWrapper({ header: 'step @INTERPRETER@ x', workdir: '/w/@INTERPRETER@; id', interpreter: 'sh', files: stepFiles('/w/@COMMAND@') });
    expect(text.split('\n')[1]).toBe('# step @INTERPRETER@ x');
    expect(text).toContain("cd '/w/@INTERPRETER@; id' || exit 97");
    expect(text).toContain("sh '/w/@COMMAND@/.af/command'");
  });

  it('refuses an interpreter that is not a program and its words', () => {
    expect(() => stepWrapper({ header: 'h', workdir: '/w', interpreter: 'sh; rm -rf ~', files: stepFiles('/w') })).toThrow(/interpreter/);
  });

  it('a template and its values must agree', () => {
    expect(fillTemplate('a @X@ b', { X: 'y z' })).toBe("a 'y z' b");
    expect(() => fillTemplate('a @X@ @Y@', { X: '1' })).toThrow(/@Y@ has no value/);
    expect(() => fillTemplate('a @X@', { X: '1', Z: '2' })).toThrow(/no placeholder for @Z@/);
  });

  it('run by /bin/sh: logs, runs the command in the step directory, writes the exit code', async () => {
    const root = mkdtempSync(join(tmpdir(), "af-wrapper-it's "));
    try {
      const dir = join(root, 'step $1');
      const files = stepFiles(dir);
      mkdirSync(files.dir, { recursive: true });
      writeFileSync(files.command, 'pwd\necho out; echo err >&2\nexit 3\n');
      writeFileSync(files.wrapper, stepWrapper({ header: 'AF Gateway: step s, attempt 1', workdir: dir, interpreter: 'sh', files }));
      await expect(run('/bin/sh', [files.wrapper], { cwd: root })).rejects.toMatchObject({ code: 3 });
      expect(readFileSync(files.exitCode, 'utf8')).toBe('3\n');
      expect(readFileSync(files.log, 'utf8')).toBe(`--- AF Gateway: step s, attempt 1 ---\n${dir}\nout\nerr\n`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
