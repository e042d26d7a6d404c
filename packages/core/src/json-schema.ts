import { RE2JS } from 're2js';
import { regexProgramSize } from './regex-size.js';

/**
 * JSON Schema checking whose cost the caller cannot blow up. Schemas come from requests
 * (tool parameters, `response_format`) and the values from the model, which a caller can
 * steer, so every step is bounded: limits on the schema's size, depth and in-place fan-out
 * (`$ref`/`allOf` chains that double at each level) are checked once, `pattern` runs on a
 * linear-time engine (RE2 semantics), `enum`/`const`/`uniqueItems` compare by hashed
 * canonical JSON, and a check stops when its step budget is spent.
 */

export interface SchemaLimits {
  /** Nesting of JSON values in the schema document. @defaultValue 64 */
  maxDepth: number;
  /** JSON values (objects, arrays, scalars) in the schema document. @defaultValue 20000 */
  maxValues: number;
  /** Subschemas that may apply to one value of the instance through `$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`. @defaultValue 1000 */
  maxFanOut: number;
  /** Characters in one `pattern` or `patternProperties` key. @defaultValue 1000 */
  maxPatternLength: number;
  /**
   * RE2 program instructions that the patterns compiled for one request may add up to (an upper
   * bound read from their text before anything is compiled: repetition counts multiply it).
   * Patterns compiled before (by their text) are free. @defaultValue 10000 (about 20 ms of compiling)
   */
  maxPatternProgram: number;
}

export const DEFAULT_SCHEMA_LIMITS: Readonly<SchemaLimits> = Object.freeze({
  maxDepth: 64,
  maxValues: 20_000,
  maxFanOut: 1000,
  maxPatternLength: 1000,
  maxPatternProgram: 10_000,
});

/** Instructions left for compiling new patterns: one per request, shared by its schemas. */
export interface PatternBudget {
  remaining: number;
}

export const patternBudget = (limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS): PatternBudget => ({ remaining: limits.maxPatternProgram });

/**
 * Compiled patterns by their text, shared by every request: an agent sends the same tools each
 * turn, and their patterns compile once. Bounded by entries and by the program size they hold,
 * least recently used out first.
 */
const PATTERN_CACHE_ENTRIES = 2048;
const PATTERN_CACHE_PROGRAM = 500_000;
const patternCache = new Map<string, { re: RE2JS | null; size: number }>();
let patternCacheProgram = 0;
let compilations = 0;

/** Patterns compiled since the process started (tests: a refusal compiles nothing). */
export const patternCompilations = (): number => compilations;

function compilePattern(source: string, size: number): RE2JS | null {
  compilations++;
  let re: RE2JS | null;
  try {
    re = RE2JS.compile(source);
  } catch {
    // ECMA-262 features RE2 lacks (lookaround, backreferences) cannot run in linear time: that constraint is not checked.
    re = null;
  }
  patternCache.set(source, { re, size });
  patternCacheProgram += size;
  for (const [old, entry] of patternCache) {
    if (patternCache.size <= PATTERN_CACHE_ENTRIES && patternCacheProgram <= PATTERN_CACHE_PROGRAM) break;
    patternCache.delete(old);
    patternCacheProgram -= entry.size;
  }
  return re;
}

/** A schema over the limits; `pointer` is the JSON Pointer of the part at fault (`''` for the whole schema). */
export class SchemaTooComplex extends Error {
  constructor(
    message: string,
    readonly pointer: string,
  ) {
    super(message);
    this.name = 'SchemaTooComplex';
  }
}

/** Work units of one or more checks; shared by the checks of one request so their sum is bounded. */
export interface StepBudget {
  remaining: number;
}

/**
 * About 5 to 15 ms of one core (a step is 0.3 to 0.75 µs): a real tool call's check takes a few
 * hundred steps; past this the check says "unknown" instead of holding the event loop.
 */
export const DEFAULT_STEP_BUDGET = 20_000;

export const stepBudget = (steps = DEFAULT_STEP_BUDGET): StepBudget => ({ remaining: steps });

export type SchemaCheck =
  | { valid: true }
  | { valid: false; at: string; problem: string }
  /** Not decided: the step budget ran out, or the value is nested beyond what can be walked. */
  | { valid: 'unknown'; problem: string };

export interface CompiledSchema {
  check(value: unknown, budget?: StepBudget): SchemaCheck;
}

type Schema = boolean | Record<string, unknown>;

const IN_PLACE_LISTS = ['allOf', 'anyOf', 'oneOf'] as const;
const IN_PLACE_SINGLES = ['not', 'if', 'then', 'else'] as const;

class OutOfSteps extends Error {}
class Invalid {
  constructor(
    readonly at: string,
    readonly problem: string,
  ) {}
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** JSON with sorted keys: equal values, equal strings (for enum, const, uniqueItems). Costs one step per value. */
function canonical(value: unknown, budget?: StepBudget): string {
  if (budget && --budget.remaining < 0) throw new OutOfSteps();
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v, budget)).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k], budget)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** Where a part of the schema is, built only when an error names it. */
type Path = { readonly parent: Path; readonly key: string | number } | undefined;
const at = (parent: Path, key: string | number): Path => ({ parent, key });
function pointerOf(path: Path): string {
  const keys: string[] = [];
  for (let p = path; p; p = p.parent) keys.push(typeof p.key === 'number' ? String(p.key) : escapePointer(p.key));
  return keys.length ? `/${keys.reverse().join('/')}` : '';
}

/** Keywords whose values are data, not schemas: counted for size, never compiled. */
const VALUE_KEYWORDS = new Set(['enum', 'const', 'default', 'examples']);

class Compiled implements CompiledSchema {
  private readonly patterns = new Map<string, RE2JS | null>();
  private readonly enums = new Map<object, Set<string>>();
  private readonly consts = new Map<object, string>();
  private readonly fanOut = new Map<object, number>();

  constructor(
    private readonly root: Schema,
    private readonly limits: SchemaLimits,
    private readonly budget: PatternBudget,
  ) {
    this.prepare();
  }

  /** Resolves a local `$ref` (`#`, `#/$defs/x`, `#/definitions/x`, any JSON Pointer); undefined for remote or missing targets. */
  private resolve(ref: string): Schema | undefined {
    if (ref === '#') return this.root;
    if (!ref.startsWith('#/')) return undefined;
    let at: unknown = this.root;
    for (const raw of ref.slice(2).split('/')) {
      const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      if (Array.isArray(at)) at = at[Number(key)];
      else if (isObject(at)) at = Object.hasOwn(at, key) ? at[key] : undefined;
      else return undefined;
    }
    return typeof at === 'boolean' || isObject(at) ? at : undefined;
  }

  private pattern(source: string, path: Path): RE2JS | null {
    const known = this.patterns.get(source);
    if (known !== undefined) return known;
    if (source.length > this.limits.maxPatternLength)
      throw new SchemaTooComplex(`a pattern is longer than ${this.limits.maxPatternLength} characters`, pointerOf(path));
    const cached = patternCache.get(source);
    let compiled: RE2JS | null;
    if (cached) {
      // Most recently used goes last.
      patternCache.delete(source);
      patternCache.set(source, cached);
      compiled = cached.re;
    } else {
      const size = regexProgramSize(source);
      if (size > this.budget.remaining)
        throw new SchemaTooComplex(
          `its patterns would compile to more than ${this.limits.maxPatternProgram} instructions (this one to about ${size}; repetition counts multiply a pattern's size)`,
          pointerOf(path),
        );
      this.budget.remaining -= size;
      compiled = compilePattern(source, size);
    }
    this.patterns.set(source, compiled);
    return compiled;
  }

  /**
   * One walk over the document, without recursion (a hostile one may be nested 100,000 deep):
   * its size and depth against the limits, then for every schema in it the patterns and
   * enum/const sets compiled and the in-place fan-out checked. Only in-place chains recurse,
   * and those are bounded by `maxFanOut`.
   */
  private prepare(): void {
    const { maxValues, maxDepth } = this.limits;
    const stack: Array<[unknown, number, Path, boolean]> = [[this.root, 1, undefined, false]];
    let values = 0;
    while (stack.length) {
      const [node, depth, path, isValue] = stack.pop()!;
      if (++values > maxValues) throw new SchemaTooComplex(`it has more than ${maxValues} values`, '');
      if (typeof node !== 'object' || node === null) continue;
      if (depth > maxDepth) throw new SchemaTooComplex(`it is nested more than ${maxDepth} levels deep`, pointerOf(path));
      if (Array.isArray(node)) {
        for (let i = 0; i < node.length; i++) stack.push([node[i], depth + 1, at(path, i), isValue]);
        continue;
      }
      const schema = node as Record<string, unknown>;
      if (!isValue) {
        if (!this.fanOut.has(schema)) this.fanOutOf(schema, path, new Set());
        if (typeof schema.pattern === 'string') this.pattern(schema.pattern, at(path, 'pattern'));
        if (isObject(schema.patternProperties))
          for (const source of Object.keys(schema.patternProperties)) this.pattern(source, at(path, 'patternProperties'));
        if (Array.isArray(schema.enum)) this.enums.set(schema, new Set(schema.enum.map((v) => canonical(v))));
        if ('const' in schema) this.consts.set(schema, canonical(schema.const));
      }
      for (const key in schema) stack.push([schema[key], depth + 1, at(path, key), isValue || VALUE_KEYWORDS.has(key)]);
    }
  }

  /** How many subschemas one value meets through `schema` in place ($ref, allOf, anyOf, oneOf, not, if/then/else, dependent schemas). */
  private fanOutOf(schema: unknown, path: Path, inPlace: Set<object>): number {
    if (!isObject(schema)) return 1;
    const known = this.fanOut.get(schema);
    if (known !== undefined) return known;
    if (inPlace.has(schema)) throw new SchemaTooComplex('a $ref cycle applies a schema to the same value forever', pointerOf(path));
    inPlace.add(schema);
    let total = 1;
    const add = (n: number) => {
      total += n;
      if (total > this.limits.maxFanOut)
        throw new SchemaTooComplex(
          `more than ${this.limits.maxFanOut} subschemas would apply to one value (through $ref, allOf, anyOf, oneOf)`,
          pointerOf(path),
        );
    };
    if (typeof schema.$ref === 'string') {
      const target = this.resolve(schema.$ref);
      if (target !== undefined) add(this.fanOutOf(target, at(path, '$ref'), inPlace));
    }
    for (const key of IN_PLACE_LISTS) {
      const list = schema[key];
      if (Array.isArray(list)) for (let i = 0; i < list.length; i++) add(this.fanOutOf(list[i], at(at(path, key), i), inPlace));
    }
    for (const key of IN_PLACE_SINGLES) if (key in schema) add(this.fanOutOf(schema[key], at(path, key), inPlace));
    for (const key of ['dependentSchemas', 'dependencies'] as const) {
      const map = schema[key];
      if (!isObject(map)) continue;
      for (const k in map) if (!Array.isArray(map[k])) add(this.fanOutOf(map[k], at(at(path, key), k), inPlace));
    }
    inPlace.delete(schema);
    this.fanOut.set(schema, total);
    return total;
  }

  check(value: unknown, budget: StepBudget = stepBudget()): SchemaCheck {
    try {
      const failure = this.validate(this.root, value, '', budget);
      return failure ? { valid: false, at: failure.at, problem: failure.problem } : { valid: true };
    } catch (err) {
      if (err instanceof OutOfSteps) return { valid: 'unknown', problem: 'the check ran out of its step budget' };
      if (err instanceof RangeError) return { valid: 'unknown', problem: 'the value is nested too deeply to check' };
      throw err;
    }
  }

  private spend(budget: StepBudget, steps: number): void {
    budget.remaining -= steps;
    if (budget.remaining < 0) throw new OutOfSteps();
  }

  /** The first failure, or undefined when `value` satisfies `schema`. */
  private validate(schema: Schema, value: unknown, at: string, budget: StepBudget): Invalid | undefined {
    this.spend(budget, 1);
    if (schema === true) return undefined;
    if (schema === false) return new Invalid(at, 'is not allowed here');
    const s = schema;
    if (typeof s.$ref === 'string') {
      const target = this.resolve(s.$ref);
      if (target !== undefined) {
        const failure = this.validate(target, value, at, budget);
        if (failure) return failure;
      }
    }
    const typeFailure = this.checkType(s, value, at);
    if (typeFailure) return typeFailure;
    const constant = this.consts.get(s);
    if (constant !== undefined && canonical(value, budget) !== constant)
      return new Invalid(at, constant.length <= 80 ? `must be ${constant}` : 'must be the constant value');
    const allowed = this.enums.get(s);
    if (allowed && !allowed.has(canonical(value, budget))) return new Invalid(at, 'must be one of the enumerated values');
    if (typeof value === 'number') {
      const failure = checkNumber(s, value, at);
      if (failure) return failure;
    } else if (typeof value === 'string') {
      const failure = this.checkString(s, value, at, budget);
      if (failure) return failure;
    } else if (Array.isArray(value)) {
      const failure = this.checkArray(s, value, at, budget);
      if (failure) return failure;
    } else if (isObject(value)) {
      const failure = this.checkObject(s, value, at, budget);
      if (failure) return failure;
    }
    return this.checkCombinators(s, value, at, budget);
  }

  private checkType(s: Record<string, unknown>, value: unknown, at: string): Invalid | undefined {
    const type = s.type;
    if (type === undefined) return undefined;
    const types = Array.isArray(type) ? type : [type];
    for (const t of types) if (hasType(value, t)) return undefined;
    return new Invalid(at, `must be ${types.join(' or ')}`);
  }

  private checkString(s: Record<string, unknown>, value: string, at: string, budget: StepBudget): Invalid | undefined {
    if (typeof s.minLength === 'number' || typeof s.maxLength === 'number') {
      this.spend(budget, 1 + (value.length >> 6));
      let length = 0;
      for (const _ of value) length++;
      if (typeof s.minLength === 'number' && length < s.minLength) return new Invalid(at, `must have at least ${s.minLength} characters`);
      if (typeof s.maxLength === 'number' && length > s.maxLength) return new Invalid(at, `must have at most ${s.maxLength} characters`);
    }
    if (typeof s.pattern === 'string') {
      const re = this.patterns.get(s.pattern);
      if (re) {
        this.spend(budget, 1 + (value.length >> 4));
        if (!re.matcher(value).find()) return new Invalid(at, `must match the pattern ${JSON.stringify(s.pattern)}`);
      }
    }
    return undefined;
  }

  private checkArray(s: Record<string, unknown>, value: unknown[], at: string, budget: StepBudget): Invalid | undefined {
    if (typeof s.minItems === 'number' && value.length < s.minItems) return new Invalid(at, `must have at least ${s.minItems} items`);
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) return new Invalid(at, `must have at most ${s.maxItems} items`);
    // Draft 2020-12 `prefixItems` + `items`, or draft 7's array form of `items` + `additionalItems`.
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : [];
    const rest = Array.isArray(s.items) ? s.additionalItems : s.items;
    for (let i = 0; i < value.length; i++) {
      const sub = (i < prefix.length ? prefix[i] : rest) as Schema | undefined;
      if (sub === undefined) continue;
      const failure = this.validate(sub, value[i], `${at}/${i}`, budget);
      if (failure) return failure;
    }
    if (s.uniqueItems === true) {
      const seen = new Set<string>();
      for (const item of value) {
        const key = canonical(item, budget);
        if (seen.has(key)) return new Invalid(at, 'must not contain duplicate items');
        seen.add(key);
      }
    }
    if (s.contains !== undefined) {
      let matches = 0;
      for (let i = 0; i < value.length; i++) if (!this.validate(s.contains as Schema, value[i], `${at}/${i}`, budget)) matches++;
      const min = typeof s.minContains === 'number' ? s.minContains : 1;
      if (matches < min) return new Invalid(at, `must contain at least ${min} matching item${min === 1 ? '' : 's'}`);
      if (typeof s.maxContains === 'number' && matches > s.maxContains)
        return new Invalid(at, `must contain at most ${s.maxContains} matching items`);
    }
    return undefined;
  }

  private checkObject(s: Record<string, unknown>, value: Record<string, unknown>, at: string, budget: StepBudget): Invalid | undefined {
    const keys = Object.keys(value);
    if (typeof s.minProperties === 'number' && keys.length < s.minProperties)
      return new Invalid(at, `must have at least ${s.minProperties} properties`);
    if (typeof s.maxProperties === 'number' && keys.length > s.maxProperties)
      return new Invalid(at, `must have at most ${s.maxProperties} properties`);
    if (Array.isArray(s.required)) {
      this.spend(budget, s.required.length);
      for (const name of s.required)
        if (typeof name === 'string' && !Object.hasOwn(value, name)) return new Invalid(at, `must have required property '${name}'`);
    }
    const properties = isObject(s.properties) ? s.properties : undefined;
    const patternProperties = isObject(s.patternProperties) ? Object.entries(s.patternProperties) : [];
    for (const key of keys) {
      const where = `${at}/${escapePointer(key)}`;
      let matched = false;
      if (properties && Object.hasOwn(properties, key)) {
        matched = true;
        const failure = this.validate(properties[key] as Schema, value[key], where, budget);
        if (failure) return failure;
      }
      for (const [source, sub] of patternProperties) {
        const re = this.patterns.get(source);
        if (!re) continue;
        this.spend(budget, 1 + (key.length >> 4));
        if (!re.matcher(key).find()) continue;
        matched = true;
        const failure = this.validate(sub as Schema, value[key], where, budget);
        if (failure) return failure;
      }
      if (!matched && s.additionalProperties !== undefined) {
        if (s.additionalProperties === false) return new Invalid(at, `must not have the property '${key}'`);
        const failure = this.validate(s.additionalProperties as Schema, value[key], where, budget);
        if (failure) return failure;
      }
      if (s.propertyNames !== undefined) {
        const failure = this.validate(s.propertyNames as Schema, key, where, budget);
        if (failure) return new Invalid(at, `has a property name that is not allowed ('${key}')`);
      }
    }
    // Draft 7's `dependencies` holds both kinds: arrays of names and schemas.
    const legacy = isObject(s.dependencies) ? s.dependencies : undefined;
    const dependentRequired = isObject(s.dependentRequired) ? s.dependentRequired : legacy;
    const dependentSchemas = isObject(s.dependentSchemas) ? s.dependentSchemas : legacy;
    for (const key of keys) {
      const needs = dependentRequired?.[key];
      if (Array.isArray(needs))
        for (const other of needs)
          if (typeof other === 'string' && !Object.hasOwn(value, other))
            return new Invalid(at, `must have the property '${other}' when '${key}' is present`);
      const sub = dependentSchemas?.[key];
      if (sub !== undefined && !Array.isArray(sub)) {
        const failure = this.validate(sub as Schema, value, at, budget);
        if (failure) return failure;
      }
    }
    return undefined;
  }

  private checkCombinators(s: Record<string, unknown>, value: unknown, at: string, budget: StepBudget): Invalid | undefined {
    if (Array.isArray(s.allOf))
      for (const sub of s.allOf) {
        const failure = this.validate(sub as Schema, value, at, budget);
        if (failure) return failure;
      }
    if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => !this.validate(sub as Schema, value, at, budget)))
      return new Invalid(at, 'must match at least one of the schemas in anyOf');
    if (Array.isArray(s.oneOf)) {
      let matches = 0;
      for (const sub of s.oneOf) if (!this.validate(sub as Schema, value, at, budget) && ++matches > 1) break;
      if (matches !== 1) return new Invalid(at, 'must match exactly one of the schemas in oneOf');
    }
    if (s.not !== undefined && !this.validate(s.not as Schema, value, at, budget))
      return new Invalid(at, 'must not match the schema in not');
    if (s.if !== undefined) {
      const branch = this.validate(s.if as Schema, value, at, budget) ? s.else : s.then;
      if (branch !== undefined) {
        const failure = this.validate(branch as Schema, value, at, budget);
        if (failure) return failure;
      }
    }
    return undefined;
  }
}

function hasType(value: unknown, type: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isObject(value);
    default:
      // An unknown type name constrains nothing we can check.
      return true;
  }
}

function checkNumber(s: Record<string, unknown>, value: number, at: string): Invalid | undefined {
  const { minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf } = s;
  if (typeof minimum === 'number' && (exclusiveMinimum === true ? value <= minimum : value < minimum))
    return new Invalid(at, `must be ${exclusiveMinimum === true ? '>' : '>='} ${minimum}`);
  if (typeof maximum === 'number' && (exclusiveMaximum === true ? value >= maximum : value > maximum))
    return new Invalid(at, `must be ${exclusiveMaximum === true ? '<' : '<='} ${maximum}`);
  if (typeof exclusiveMinimum === 'number' && value <= exclusiveMinimum) return new Invalid(at, `must be > ${exclusiveMinimum}`);
  if (typeof exclusiveMaximum === 'number' && value >= exclusiveMaximum) return new Invalid(at, `must be < ${exclusiveMaximum}`);
  if (typeof multipleOf === 'number' && multipleOf > 0) {
    const q = value / multipleOf;
    if (Math.abs(q - Math.round(q)) > 1e-9) return new Invalid(at, `must be a multiple of ${multipleOf}`);
  }
  return undefined;
}

const compiledBySchema = new WeakMap<object, CompiledSchema>();

/**
 * Checks a schema against the limits and prepares it for checking values. Throws
 * SchemaTooComplex when it is over a limit. Compiled once per schema object. The schemas of one
 * request share one `budget` for compiling patterns, so their sum is bounded, not each alone.
 */
export function compileSchema(
  schema: unknown,
  limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS,
  budget: PatternBudget = patternBudget(limits),
): CompiledSchema {
  if (typeof schema === 'boolean') return new Compiled(schema, limits, budget);
  if (!isObject(schema)) throw new SchemaTooComplex('a schema must be an object or a boolean', '');
  const useCache = limits === DEFAULT_SCHEMA_LIMITS;
  const cached = useCache ? compiledBySchema.get(schema) : undefined;
  if (cached) return cached;
  const compiled = new Compiled(schema, limits, budget);
  if (useCache) compiledBySchema.set(schema, compiled);
  return compiled;
}
