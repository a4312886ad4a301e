// yadage's templates are Python format strings: `{name}` is a parameter, `{{` and `}}` are literal
// braces (awk and shell scripts need them), `{name[0]}` and `{name.key}` reach into a value.
// Values render as a shell command line expects them: lists as space-separated words.

export class TemplateError extends Error {}

type Piece = { text: string } | { field: string; path: (string | number)[] };

function parse(template: string): Piece[] {
  const pieces: Piece[] = [];
  let text = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch === '{' && template[i + 1] === '{') {
      text += '{';
      i++;
    } else if (ch === '}' && template[i + 1] === '}') {
      text += '}';
      i++;
    } else if (ch === '{') {
      const end = template.indexOf('}', i);
      if (end < 0) throw new TemplateError(`unclosed { at position ${i} (write {{ for a literal brace)`);
      const body = template
        .slice(i + 1, end)
        .split(/[!:]/, 1)[0]!
        .trim();
      const m = /^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*)$/.exec(body);
      if (!m) throw new TemplateError(`{${template.slice(i + 1, end)}} is not a parameter reference (write {{ for a literal brace)`);
      if (text) pieces.push({ text });
      text = '';
      const path = [...m[2]!.matchAll(/\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((p) => (p[1] !== undefined ? Number(p[1]) : p[2]!));
      pieces.push({ field: m[1]!, path });
      i = end;
    } else if (ch === '}') {
      throw new TemplateError(`single } at position ${i} (write }} for a literal brace)`);
    } else {
      text += ch;
    }
  }
  if (text) pieces.push({ text });
  return pieces;
}

/** The parameter names a template uses (throws TemplateError when it is malformed). */
export function templateFields(template: string): string[] {
  return [...new Set(parse(template).flatMap((p) => ('field' in p ? [p.field] : [])))];
}

export function renderValue(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.map(renderValue).join(' ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Characters a formatted template may have unless the caller says otherwise (a command, a published value). */
export const MAX_FORMATTED = 1024 * 1024;

/** Throws TemplateError past `maxLength` characters, checked piece by piece (before joining them). */
export function formatTemplate(
  template: string,
  values: Record<string, unknown>,
  maxLength = MAX_FORMATTED,
  what = `it would be more than ${maxLength.toLocaleString('en')} characters long`,
): string {
  let length = 0;
  return parse(template)
    .map((p) => {
      const piece = formatPiece(p, values);
      if ((length += piece.length) > maxLength) {
        throw new TemplateError(`${what} (pass long lists in a file)`);
      }
      return piece;
    })
    .join('');
}

function formatPiece(p: Piece, values: Record<string, unknown>): string {
  if ('text' in p) return p.text;
  if (!Object.hasOwn(values, p.field))
    throw new TemplateError(`{${p.field}} is not a parameter of this step (it has ${Object.keys(values).join(', ') || 'none'})`);
  let v: unknown = values[p.field];
  for (const key of p.path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) {
      throw new TemplateError(
        `{${p.field}${p.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('')}}: ${p.field} has no ${typeof key === 'number' ? `item ${key}` : `key ${key}`}`,
      );
    }
    v = (v as Record<string | number, unknown>)[key];
  }
  return renderValue(v);
}

/** Every string inside a value formatted with the given values (publishers' templates), at most `budget.chars` characters in all. */
export function formatDeep(value: unknown, values: Record<string, unknown>, budget = { chars: MAX_FORMATTED }): unknown {
  if (typeof value === 'string') {
    const out = formatTemplate(value, values, budget.chars, `what the step publishes would be more than ${MAX_FORMATTED.toLocaleString('en')} characters long`);
    budget.chars -= out.length;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => formatDeep(v, values, budget));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, formatDeep(v, values, budget)]));
  return value;
}
