import { Validator } from '@cfworker/json-schema';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RE2JS } from 're2js';
import { compileSchema, patternBudget, SchemaTooComplex, stepBudget } from '../src/index.js';
import { patternCompilations, regexProgramSize } from '../src/internal.js';

/** Schemas real tools send, checked against an independent validator on the same values. */
const schemas: Record<string, Record<string, unknown>> = {
  weather: {
    type: 'object',
    properties: {
      city: { type: 'string', minLength: 1, maxLength: 40 },
      unit: { enum: ['celsius', 'fahrenheit'] },
      days: { type: 'integer', minimum: 1, maximum: 14 },
    },
    required: ['city'],
    additionalProperties: false,
  },
  refs: {
    type: 'object',
    $defs: { point: { type: 'object', properties: { x: { type: 'number' }, y: { type: 'number' } }, required: ['x', 'y'] } },
    properties: {
      from: { $ref: '#/$defs/point' },
      to: { $ref: '#/$defs/point' },
      tags: { type: 'array', items: { type: 'string' }, uniqueItems: true },
    },
  },
  combinators: {
    anyOf: [
      { type: 'string', pattern: '^[a-z]+$' },
      { type: 'integer', multipleOf: 3 },
    ],
    not: { const: 'forbidden' },
  },
  oneOf: {
    oneOf: [
      { type: 'number', minimum: 0 },
      { type: 'number', maximum: 10 },
    ],
  },
  conditional: {
    type: 'object',
    if: { properties: { kind: { const: 'a' } } },
    then: { required: ['a'] },
    else: { required: ['b'] },
    dependentRequired: { a: ['kind'] },
  },
  tuple: {
    type: 'array',
    prefixItems: [{ type: 'string' }, { type: 'boolean' }],
    items: { type: 'null' },
    minItems: 1,
    contains: { type: 'string' },
  },
  recursive: {
    $defs: {
      node: { type: 'object', properties: { value: { type: 'integer' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } } },
    },
    $ref: '#/$defs/node',
  },
  propertyNames: { type: 'object', propertyNames: { pattern: '^[a-z_]+$' }, patternProperties: { '^n_': { type: 'number' } } },
};

const values = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, 1, 3, 9, 10, 14, 15, -1, 12, 2.5, '', 'abc', 'ABC', 'forbidden', 'a', 'celsius', 'x', 'n_1'),
    fc.string({ maxLength: 6 }),
    fc.integer({ min: -20, max: 20 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.constantFrom('a', 'b', 'x'), { maxLength: 3 }),
    fc.dictionary(
      fc.constantFrom('city', 'unit', 'days', 'x', 'y', 'from', 'to', 'tags', 'kind', 'a', 'b', 'value', 'children', 'n_1', 'Bad', 'tags'),
      tie('value'),
      { maxKeys: 4 },
    ),
  ),
})).value;

describe('compileSchema().check agrees with an independent validator', () => {
  for (const [name, schema] of Object.entries(schemas)) {
    it(name, () => {
      const ours = compileSchema(schema);
      const oracle = new Validator(schema, '2020-12', true);
      fc.assert(
        fc.property(values, (value) => {
          const result = ours.check(value);
          expect(result.valid).toBe(oracle.validate(value).valid);
        }),
        { numRuns: 400 },
      );
    });
  }

  it('boundaries and duplicates', () => {
    const weather = compileSchema(schemas.weather!);
    expect(weather.check({ city: 'Oslo', days: 1 }).valid).toBe(true);
    expect(weather.check({ city: 'Oslo', days: 0 }).valid).toBe(false);
    expect(weather.check({ city: '' }).valid).toBe(false);
    const refs = compileSchema(schemas.refs!);
    expect(refs.check({ tags: ['a', 'b'] }).valid).toBe(true);
    expect(refs.check({ tags: ['a', 'a'] })).toEqual({ valid: false, at: '/tags', problem: 'must not contain duplicate items' });
    expect(refs.check({ from: { x: 1 } })).toMatchObject({ valid: false, at: '/from' });
  });

  it('names where a value fails and why', () => {
    const result = compileSchema(schemas.weather!).check({ city: 'Paris', days: 30 });
    expect(result).toEqual({ valid: false, at: '/days', problem: 'must be <= 14' });
    expect(compileSchema(schemas.weather!).check({ unit: 'kelvin' })).toMatchObject({
      valid: false,
      problem: "must have required property 'city'",
    });
  });
});

describe('hostile schemas are refused at compile time', () => {
  it('a $ref chain that doubles at each level', () => {
    const $defs: Record<string, unknown> = { d24: { type: 'string' } };
    for (let i = 1; i < 24; i++) $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const schema = { type: 'object', properties: { a: { $ref: '#/$defs/d1' } }, $defs };
    expect(JSON.stringify(schema).length).toBeLessThan(2200);
    expect(() => compileSchema(schema)).toThrow(/more than 1000 subschemas would apply to one value/);
  });

  it.each(['not', 'if', 'then', 'else'])('a chain that doubles through `%s`', (keyword) => {
    const $defs: Record<string, unknown> = { d24: { type: 'string' } };
    for (let i = 1; i < 24; i++) $defs[`d${i}`] = { [keyword]: { $ref: `#/$defs/d${i + 1}` }, allOf: [{ $ref: `#/$defs/d${i + 1}` }] };
    expect(() => compileSchema({ $ref: '#/$defs/d1', $defs })).toThrow(/more than 1000 subschemas would apply to one value/);
  });

  it('an in-place $ref cycle', () => {
    expect(() => compileSchema({ $defs: { a: { allOf: [{ $ref: '#/$defs/a' }] } }, $ref: '#/$defs/a' })).toThrow(/\$ref cycle/);
  });

  it('nesting, size and pattern length', () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'object', properties: { a: deep } };
    expect(() => compileSchema(deep)).toThrow(SchemaTooComplex);
    const wide = { enum: Array.from({ length: 25_000 }, (_, i) => i) };
    expect(() => compileSchema(wide)).toThrow(/more than 20000 values/);
    expect(() => compileSchema({ pattern: 'a'.repeat(1001) })).toThrow(/pattern is longer than 1000/);
  });

  it('patterns whose programs add up past the budget are refused before any of them is compiled', () => {
    // Each alternative of a repetition is copied: ~86,000 RE2 instructions from 993 characters.
    const alternation = (from: number) => {
      const parts: string[] = [];
      for (let n = from; parts.join('|').length < 980; n--) parts.push(`\\p{L}{${n}}`);
      return `(?:${parts.join('|')})`;
    };
    const before = patternCompilations();
    const many = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`p${i}`, { type: 'string', pattern: alternation(999 - i) }])),
    };
    expect(() => compileSchema(many)).toThrow(/patterns would compile to more than 10000 instructions/);
    expect(patternCompilations()).toBe(before);
    // Small patterns add up too, across the schemas of one request.
    const budget = patternBudget();
    const small = (i: number) => ({ type: 'string', pattern: `^x${i}\\p{L}{60}$` });
    expect(() => {
      for (let i = 0; i < 300; i++) compileSchema(small(i), undefined, budget);
    }).toThrow(SchemaTooComplex);
    const compiled = patternCompilations() - before;
    expect(compiled).toBeLessThan(300);
    // A pattern compiled once is free afterwards: an agent's tools come back every turn.
    const again = patternBudget();
    again.remaining = 0;
    expect(() => compileSchema(small(0), undefined, again)).not.toThrow();
    expect(patternCompilations() - before).toBe(compiled);
  });

  it("a pattern's estimated program is never smaller than RE2's", () => {
    const patterns = [
      '\\p{L}{999}',
      '(?:\\p{L}{999}|\\p{L}{998})',
      '[a-z]{1000}',
      '(a{30}){30}',
      '^[a-zA-Z0-9_-]{1,64}$',
      '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
      '(a|b|c|d)*x',
      'a{2,}',
      '(?i)hello',
      '(?P<x>ab)+',
      '\\Qa.b.c\\E',
      '(ab){3,}?',
      '[[:alpha:]]{100}',
      '((((a{4}){4}){4}){4})',
      '(?:a?){1000}',
      '[]a]{5}|[^]]*',
      '\\x{10FFFF}{3}\\x41{2}',
    ];
    for (const source of patterns) {
      const program = (RE2JS.compile(source) as unknown as { re2Input: { prog: { inst: unknown[] } } }).re2Input.prog.inst.length;
      const estimate = regexProgramSize(source);
      expect(estimate, source).toBeGreaterThanOrEqual(program);
      expect(estimate, source).toBeLessThan(program * 2 + 16);
    }
  });

  it('a recursive schema that descends into the value is fine', () => {
    expect(() => compileSchema(schemas.recursive!)).not.toThrow();
  });
});

describe('checking stays bounded whatever the value', () => {
  it('a backtracking pattern runs in linear time', () => {
    const check = compileSchema({ type: 'string', pattern: '^(a+)+$' });
    const cpu = process.cpuUsage();
    expect(check.check('a'.repeat(29) + '!').valid).toBe(false);
    expect(check.check('a'.repeat(100_000) + '!').valid).toBe(false);
    expect(check.check('a'.repeat(1000)).valid).toBe(true);
    const used = process.cpuUsage(cpu);
    // A backtracking engine needs ~20 s for the 29-character input alone.
    expect(used.user + used.system).toBeLessThan(2_000_000);
  });

  it('patterns RE2 cannot run (lookaround, backreferences) are not checked', () => {
    expect(compileSchema({ type: 'string', pattern: '^(?=a)b' }).check('zzz').valid).toBe(true);
  });

  it('allOf branches that multiply with the depth of the value run out of steps', () => {
    const schema = {
      $defs: { d: { type: 'object', allOf: [{ properties: { a: { $ref: '#/$defs/d' } } }, { properties: { a: { $ref: '#/$defs/d' } } }] } },
      $ref: '#/$defs/d',
    };
    let value: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) value = { a: value };
    const budget = stepBudget(50_000);
    expect(compileSchema(schema).check(value, budget)).toEqual({ valid: 'unknown', problem: 'the check ran out of its step budget' });
    expect(budget.remaining).toBeLessThan(0);
  });

  it('uniqueItems on a large array is linear, and a huge enum is a set lookup', () => {
    const items = Array.from({ length: 50_000 }, (_, i) => ({ n: i }));
    expect(compileSchema({ type: 'array', uniqueItems: true }).check(items, stepBudget(1_000_000)).valid).toBe(true);
    const big = compileSchema({ enum: Array.from({ length: 15_000 }, (_, i) => `v${i}`) });
    expect(big.check('v14999').valid).toBe(true);
    expect(big.check('nope').valid).toBe(false);
  });

  it('a value nested beyond the stack is undecided, not a crash', () => {
    const schema = { $defs: { n: { type: 'array', items: { $ref: '#/$defs/n' } } }, $ref: '#/$defs/n' };
    const value = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000));
    expect(compileSchema(schema).check(value, stepBudget(10_000_000)).valid).toBe('unknown');
  });
});
