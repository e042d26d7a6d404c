import { Validator } from '@cfworker/json-schema';
import type { ChatTool } from '@tera-gw/core';

export interface ArgumentCheck {
  valid: boolean;
  problem?: string;
}

/**
 * Checks a call's arguments: JSON, and an object that satisfies the declared tool's
 * parameters when the request gave them. The schema is interpreted, never compiled to code:
 * it comes from the request.
 */
export function checkArguments(name: string, args: string, tools: readonly ChatTool[] | undefined): ArgumentCheck {
  let value: unknown;
  try {
    value = JSON.parse(args === '' ? '{}' : args);
  } catch {
    return { valid: false, problem: `arguments of '${name}' are not valid JSON` };
  }
  const tool = tools?.find((t) => t.function.name === name);
  if (!tool) return tools?.length ? { valid: false, problem: `'${name}' is not a declared tool` } : { valid: true };
  if (!tool.function.parameters) return { valid: true };
  let result;
  try {
    result = new Validator(tool.function.parameters, '2020-12', true).validate(value);
  } catch {
    // A schema the validator cannot read says nothing about the call.
    return { valid: true };
  }
  if (result.valid) return { valid: true };
  const first = result.errors[0];
  return {
    valid: false,
    problem: `arguments of '${name}' do not match its schema${first ? `: ${first.instanceLocation} ${first.error}` : ''}`,
  };
}
