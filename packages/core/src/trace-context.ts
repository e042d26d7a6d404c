/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) as a caller sends it: checked before
 * it goes anywhere, since a header two proxies duplicated arrives joined into one invalid value.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);
// list-member = key "=" value; keys lower-case (optionally tenant@system), values printable without ',' and '='.
const TRACESTATE_MEMBER = /^[a-z0-9][a-z0-9_*/@-]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** The header when it is a valid `traceparent`, else undefined. */
export function validTraceparent(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value.length > 512) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff' || traceId === ZERO_TRACE || parentId === ZERO_PARENT) return undefined;
  // Version 00 has exactly four fields; later versions may append more.
  if (version === '00' && rest !== undefined) return undefined;
  return value;
}

/** The header when it is a valid `tracestate` (at most 32 members, 512 characters), else undefined. */
export function validTracestate(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value.length > 512) return undefined;
  const members = value.split(',').map((m) => m.trim());
  if (members.length > 32) return undefined;
  for (const member of members) if (member && !TRACESTATE_MEMBER.test(member)) return undefined;
  return members.filter(Boolean).join(',') || undefined;
}
