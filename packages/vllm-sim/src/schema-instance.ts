import { pick, randomInt } from './prng.js';

type Schema = Record<string, unknown>;

const WORDS = ['alpha', 'bravo', 'delta', 'echo', 'harbor', 'meadow', 'river', 'summit', 'canyon', 'willow', 'ember', 'quartz'];
const CITIES = [
  'Paris',
  'Tokyo',
  'Lisbon',
  'Nairobi',
  'Oslo',
  'Lima',
  'Toronto',
  'Seoul',
  'Rome',
  'Berlin',
  'London',
  'Madrid',
  'Zürich',
  'Cairo',
  'Sydney',
  'Mumbai',
];

function resolveRef(root: Schema, ref: string): Schema {
  if (!ref.startsWith('#/')) return {};
  let node: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    node = typeof node === 'object' && node !== null ? (node as Schema)[part.replaceAll('~1', '/').replaceAll('~0', '~')] : undefined;
  }
  return typeof node === 'object' && node !== null ? (node as Schema) : {};
}

function typeOf(schema: Schema): string | undefined {
  const t = schema.type;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) return (t.find((x) => x !== 'null') as string | undefined) ?? (t[0] as string | undefined);
  if (schema.properties || schema.required || schema.additionalProperties !== undefined) return 'object';
  if (schema.items) return 'array';
  return undefined;
}

/** Text the request gave (the last user message): a city it names is the city the model picks. */
let hint = '';
export function withHint<T>(text: string, fn: () => T): T {
  hint = text;
  try {
    return fn();
  } finally {
    hint = '';
  }
}

function stringFor(schema: Schema, random: () => number, key: string): string {
  switch (schema.format) {
    case 'date':
      return `2026-${String(randomInt(random, 1, 12)).padStart(2, '0')}-${String(randomInt(random, 1, 28)).padStart(2, '0')}`;
    case 'date-time':
      return `2026-${String(randomInt(random, 1, 12)).padStart(2, '0')}-${String(randomInt(random, 1, 28)).padStart(2, '0')}T12:00:00Z`;
    case 'email':
      return `${pick(random, WORDS)}@example.com`;
    case 'uri':
    case 'url':
      return `https://example.com/${pick(random, WORDS)}`;
    case 'uuid':
      return '3f2b8c1e-9d4a-4e6b-8f7a-1c2d3e4f5a6b';
  }
  // A command the caller's tool will run: one that harms nothing and shows something.
  if (/^(cmd|command)$/i.test(key)) return 'ls';
  const named = CITIES.find((c) => hint.includes(c));
  let text = /city|location|place/i.test(key) ? (named ?? pick(random, CITIES)) : `${pick(random, WORDS)} ${pick(random, WORDS)}`;
  const min = typeof schema.minLength === 'number' ? schema.minLength : 0;
  const max = typeof schema.maxLength === 'number' ? schema.maxLength : Infinity;
  while (text.length < min) text += ` ${pick(random, WORDS)}`;
  if (text.length > max) text = text.slice(0, max);
  return text;
}

function numberFor(schema: Schema, random: () => number, integer: boolean): number {
  const lo =
    typeof schema.minimum === 'number' ? schema.minimum : typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + 1 : 0;
  const hi =
    typeof schema.maximum === 'number'
      ? schema.maximum
      : typeof schema.exclusiveMaximum === 'number'
        ? schema.exclusiveMaximum - 1
        : lo + 100;
  const low = Math.ceil(Math.min(lo, hi));
  const high = Math.floor(Math.max(lo, hi));
  // Whole numbers when the range has one, as models write them (a "number" field is often read as an integer).
  if (integer || high - low >= 1) return randomInt(random, low, Math.max(low, high));
  return lo;
}

export interface InstanceOptions {
  /** Objects with a `required` list get only those properties (as a model fills a tool's arguments). */
  requiredOnly?: boolean;
}

/**
 * A value that satisfies a JSON Schema, chosen with `random`: types, enum, const,
 * required and optional properties, nested objects and arrays, `additionalProperties: false`
 * (only declared properties are produced), bounds, `$ref` within the document, anyOf/oneOf/allOf.
 */
export function instanceOf(schema: unknown, random: () => number, options: InstanceOptions = {}): unknown {
  return generate(schema, random, options, schema as Schema, '', 0);
}

function generate(schema: unknown, random: () => number, options: InstanceOptions, root: Schema, key: string, depth: number): unknown {
  if (typeof schema !== 'object' || schema === null || depth > 12) return null;
  let s = schema as Schema;
  const next = (sub: unknown, name = key) => generate(sub, random, options, root, name, depth + 1);
  if (typeof s.$ref === 'string') return next(resolveRef(root, s.$ref));
  if (Array.isArray(s.allOf)) s = Object.assign({}, ...(s.allOf as Schema[]), { ...s, allOf: undefined }) as Schema;
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length) return pick(random, s.enum);
  const variants = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  // The first variant that holds a value: `anyOf: [{type: 'null'}, {...}]` is an optional value, not a null.
  if (Array.isArray(variants) && variants.length) return next(variants.find((v) => v.type !== 'null') ?? variants[0]);
  switch (typeOf(s)) {
    case 'string':
      return stringFor(s, random, key);
    case 'integer':
      return numberFor(s, random, true);
    case 'number':
      return numberFor(s, random, false);
    case 'boolean':
      return random() < 0.5;
    case 'null':
      return null;
    case 'array': {
      const min = typeof s.minItems === 'number' ? s.minItems : 1;
      const max = typeof s.maxItems === 'number' ? s.maxItems : Math.max(min, 3);
      const count = randomInt(random, min, Math.max(min, Math.min(max, min + 2)));
      const items = Array.isArray(s.prefixItems) ? (s.prefixItems as Schema[]) : undefined;
      return Array.from({ length: count }, (_, i) => next(items?.[i] ?? s.items ?? {}));
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = (s.properties ?? {}) as Record<string, Schema>;
      const required = Array.isArray(s.required) ? (s.required as string[]) : undefined;
      const names = options.requiredOnly && required ? Object.keys(props).filter((n) => required.includes(n)) : Object.keys(props);
      for (const name of names) out[name] = next(props[name], name);
      if (required) for (const name of required) if (!(name in out)) out[name] = pick(random, WORDS);
      return out;
    }
    default:
      return pick(random, WORDS);
  }
}
