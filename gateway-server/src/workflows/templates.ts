// yadage's templates are Python format strings: `{name}` is a parameter, `{{` and `}}` are literal
// braces (awk and shell scripts need them), `{name[0]}` and `{name.key}` reach into a value.
// Values render as packtivity renders them: Python's str() (None, True, ['a', 'b']), and in commands a
// list parameter as its items joined by spaces (a list of files is a list of words).

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

/** Rendering stopped at its limit (before building more): the caller says what the limit was for. */
class TooLong extends Error {}

/** Where a value is rendered to: its pieces, at most `room` characters in all. */
class Sink {
  readonly parts: string[] = [];
  constructor(private room: number) {}
  put(s: string): void {
    if ((this.room -= s.length) < 0) throw new TooLong();
    this.parts.push(s);
  }
  /** Throws when `chars` more would not fit (before they are made). */
  need(chars: number): void {
    if (chars > this.room) throw new TooLong();
  }
  text(): string {
    return this.parts.join('');
  }
}

/** A string as Python's repr writes it (single quotes unless the string has one and no double quote). */
function pyRepr(s: string, out: Sink): void {
  out.need(s.length + 2); // a repr is never shorter
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  out.put(q);
  out.put(
    s.replace(/[\\'"\p{Cc}]/gu, (c) => {
      if (c === '\\' || c === q) return `\\${c}`;
      if (c === '\n') return '\\n';
      if (c === '\r') return '\\r';
      if (c === '\t') return '\\t';
      if (c === "'" || c === '"') return c;
      return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    }),
  );
  out.put(q);
}

/** A value as Python's str() writes it, which is what yadage's templates produce: None, True, ['a', 1], {'k': 'v'}. */
function pyStrTo(value: unknown, nested: boolean, out: Sink): void {
  if (value === null || value === undefined) return out.put('None');
  if (value === true) return out.put('True');
  if (value === false) return out.put('False');
  if (typeof value === 'string') return nested ? pyRepr(value, out) : out.put(value);
  if (typeof value === 'number') return out.put(Number.isFinite(value) ? String(value) : value > 0 ? 'inf' : value < 0 ? '-inf' : 'nan');
  if (Array.isArray(value)) {
    out.put('[');
    value.forEach((v, i) => {
      if (i) out.put(', ');
      pyStrTo(v, true, out);
    });
    return out.put(']');
  }
  out.put('{');
  let first = true;
  for (const k in value as Record<string, unknown>) {
    if (!Object.hasOwn(value as object, k)) continue;
    if (!first) out.put(', ');
    first = false;
    pyRepr(k, out);
    out.put(': ');
    pyStrTo((value as Record<string, unknown>)[k], true, out);
  }
  out.put('}');
}

/** A value as Python's str() writes it; throws TooLong past `max` characters, before building more. */
function pyStr(value: unknown, max: number): string {
  const out = new Sink(max);
  pyStrTo(value, false, out);
  return out.text();
}

/**
 * How a parameter appears in a command or script: as packtivity renders it, a list becomes its items'
 * str() joined by spaces (so a list of files is a list of words), anything else its str(). Throws
 * TooLong past `max` characters.
 */
function renderValue(value: unknown, max: number): string {
  if (!Array.isArray(value)) return pyStr(value, max);
  const out = new Sink(max);
  value.forEach((v, i) => {
    if (i) out.put(' ');
    pyStrTo(v, false, out);
  });
  return out.text();
}

/** Characters a formatted template may have unless the caller says otherwise (a command, a published value). */
export const MAX_FORMATTED = 1024 * 1024;

/** Throws TemplateError past `maxLength` characters, checked piece by piece (before joining them). */
export function formatTemplate(
  template: string,
  values: Record<string, unknown>,
  maxLength = MAX_FORMATTED,
  what = `it would be more than ${maxLength.toLocaleString('en')} characters long`,
  style: Style = 'command',
): string {
  let length = 0;
  return parse(template)
    .map((p) => {
      let piece: string;
      try {
        // (a value is rendered only as far as the room left: a huge one is refused before it is built)
        piece = formatPiece(p, values, style, maxLength - length);
      } catch (err) {
        if (err instanceof TooLong) throw new TemplateError(`${what} (pass long lists in a file)`);
        throw err;
      }
      if ((length += piece.length) > maxLength) {
        throw new TemplateError(`${what} (pass long lists in a file)`);
      }
      return piece;
    })
    .join('');
}

/**
 * Commands and scripts see list parameters joined into words (packtivity does that before formatting);
 * publishers see every value as Python's str() (a list as ['a', 'b']).
 */
type Style = 'command' | 'python';

function formatPiece(p: Piece, values: Record<string, unknown>, style: Style, room: number): string {
  if ('text' in p) return p.text;
  if (!Object.hasOwn(values, p.field))
    throw new TemplateError(`{${p.field}} is not a parameter of this step (it has ${Object.keys(values).join(', ') || 'none'})`);
  let v: unknown = values[p.field];
  if (style === 'command' && Array.isArray(v) && p.path.length) {
    // yadage would index the joined string (its first character): refused rather than read differently.
    throw new TemplateError(`{${p.field}[…]}: ${p.field} is a list, which a command sees joined into words; pass the item you need as its own parameter`);
  }
  for (const key of p.path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) {
      throw new TemplateError(
        `{${p.field}${p.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('')}}: ${p.field} has no ${typeof key === 'number' ? `item ${key}` : `key ${key}`}`,
      );
    }
    v = (v as Record<string | number, unknown>)[key];
  }
  return style === 'command' ? renderValue(v, room) : pyStr(v, room);
}

/** Every string inside a value formatted with the given values (publishers' templates), at most `budget.chars` characters in all. */
export function formatDeep(value: unknown, values: Record<string, unknown>, budget = { chars: MAX_FORMATTED }): unknown {
  if (typeof value === 'string') {
    const out = formatTemplate(
      value,
      values,
      budget.chars,
      `what the step publishes would be more than ${MAX_FORMATTED.toLocaleString('en')} characters long`,
      'python',
    );
    budget.chars -= out.length;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => formatDeep(v, values, budget));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, formatDeep(v, values, budget)]));
  return value;
}
