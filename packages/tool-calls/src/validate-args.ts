import { compileSchema, stepBudget, type ChatTool, type StepBudget } from '@tera-gw/core';

export interface ArgumentCheck {
  valid: boolean;
  problem?: string;
}

/**
 * Checks a call's arguments: JSON, and an object that satisfies the declared tool's
 * parameters when the request gave them. The schema comes from the request and the
 * arguments from the model, so the check runs on core's bounded checker: its schema limits
 * were enforced at validation, and `budget` (one per response) caps the work of all checks.
 * A check the budget cannot finish counts as valid: nothing proved the call wrong.
 */
export function checkArguments(
  name: string,
  args: string,
  tools: readonly ChatTool[] | undefined,
  budget: StepBudget = stepBudget(),
): ArgumentCheck {
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
    result = compileSchema(tool.function.parameters).check(value, budget);
  } catch {
    // A schema over the limits never gets here (validation refused it); one from elsewhere says nothing about the call.
    return { valid: true };
  }
  if (result.valid !== false) return { valid: true };
  return { valid: false, problem: `arguments of '${name}' do not match its schema: ${result.at || '/'} ${result.problem}` };
}
