import { z } from 'zod';
import { formatParam, issueToError } from './validate.js';

/**
 * A factory's options checked against its schema, once, at start-up (as express-rate-limit
 * does): a wrong option throws a TypeError that names the factory, the option and what is
 * wrong. Returns the parsed options, defaults applied. Every package validates its own options
 * this way, so an app that composes the middlewares itself gets the same checks as
 * `createGateway()`, whose schema is composed of theirs.
 */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, factory: string): z.output<S> {
  const result = schema.safeParse(input ?? {}, { reportInput: true });
  if (result.success) return result.data;
  throw new TypeError(`${factory}: ${optionProblem(result.error.issues[0]!)}.`);
}

/** Where an issue is (`budget.period`, `[2].budget.period`) and what is wrong there, in words. */
export function describeIssue(issue: z.core.$ZodIssue): { path: string; message: string; unknown: boolean } {
  if (issue.code === 'unrecognized_keys') {
    return { path: formatParam([...issue.path, issue.keys[0]!]) ?? '', message: `is not a known field`, unknown: true };
  }
  // Core's request validation already names the deepest field at fault inside a union.
  const error = issueToError(issue);
  const message = issue.code === 'invalid_union' ? error.message : issue.message;
  return { path: error.param ?? formatParam(issue.path) ?? '', message, unknown: false };
}

/** `unknown option 'x.y'`, or `option 'x.y': what is wrong`. */
export function optionProblem(issue: z.core.$ZodIssue): string {
  const { path, message, unknown } = describeIssue(issue);
  if (issue.code === 'unrecognized_keys') {
    const at = formatParam(issue.path);
    return `unknown option ${issue.keys.map((k) => `'${at ? `${at}.` : ''}${k}'`).join(', ')}`;
  }
  return unknown ? `unknown option '${path}'` : `option '${path || '(root)'}': ${message}`;
}

/** A value checked only by its shape: an object with these methods (a store, a key store, a router). */
export function implementing<T>(what: string, ...methods: string[]) {
  return z.custom<T>(
    (v) => typeof v === 'object' && v !== null && methods.every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
    `must be ${what} (an object with ${methods.map((m) => `${m}()`).join(', ')})`,
  );
}

/** A function option (a hook, a clock, a middleware). */
export function fn<T extends (...args: never[]) => unknown>(what = 'a function') {
  return z.custom<T>((v) => typeof v === 'function', `must be ${what}`);
}
