// Renders the configuration reference (Markdown) from the config schema: every key, its type,
// default and description, in file order.
const typeOf = (s) => {
  if (s.enum) return s.enum.map((v) => (v === null ? 'null' : `\`${v}\``)).join(' \\| ');
  const t = Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
  if (t === 'array' && s.items?.type) return `array of ${Array.isArray(s.items.type) ? s.items.type.join('|') : s.items.type}`;
  return t;
};
const fmtDefault = (s) => {
  if (!('default' in s)) return '';
  const d = s.default;
  if (d !== null && typeof d === 'object' && !Array.isArray(d) && Object.keys(d).length === 0 && s.type === 'object') return '';
  const text = JSON.stringify(d);
  return text.length > 60 ? '(see below)' : `\`${text}\``;
};
const esc = (t) => (t ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

function rows(schema, prefix, out) {
  for (const [key, s] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(`| \`${path}\` | ${typeOf(s)} | ${fmtDefault(s)} | ${esc(s.description)} |`);
    if (s.type === 'object' && s.properties) rows(s, path, out);
    if (s.type === 'array' && s.items?.properties) rows(s.items, `${path}[]`, out);
  }
}

export function renderConfigReference(schema) {
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from schemas/json/config.json by `npm run build`; edit the schema, not this file. -->',
    '',
    esc(schema.description),
    '',
    'Start the gateway with `af-gateway-server serve --config FILE` (YAML or JSON).',
    '',
    '| key | type | default | description |',
    '| --- | --- | --- | --- |',
  ];
  rows(schema, '', out);
  const long = Object.entries(schema.properties).filter(([, s]) => JSON.stringify(s.default ?? null).length > 60);
  for (const [key, s] of long) {
    out.push('', `Default of \`${key}\`:`, '', '```json', JSON.stringify(s.default, null, 2), '```');
  }
  return out.join('\n') + '\n';
}
