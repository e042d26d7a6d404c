import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Reasoning sealed for clients that keep no server state (`store: false` with
 * `include: ['reasoning.encrypted_content']`, as the Codex CLI sends): AES-256-GCM under a key
 * derived from a gateway secret, with the API key's id as associated data, so an item opens only
 * for the key it was made for and any change to it is detected. Secrets form a list: the first
 * seals, every one opens, so a secret can be rotated without breaking conversations in flight.
 */
export interface Sealer {
  seal(text: string, keyId: string): string;
  /** The sealed text, or undefined when the item was tampered with, made for another key or under an unknown secret. */
  open(sealed: string, keyId: string): string | undefined;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

function deriveKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'tera-gw', 'responses reasoning v1', 32));
}

export function createSealer(secrets: readonly string[]): Sealer {
  if (!secrets.length) throw new TypeError('createSealer(): give at least one secret');
  for (const s of secrets) if (s.length < 16) throw new TypeError('createSealer(): each secret needs at least 16 characters');
  const keys = secrets.map(deriveKey);
  return {
    seal(text, keyId) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', keys[0]!, iv);
      cipher.setAAD(Buffer.from(keyId));
      const body = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]).toString('base64');
    },
    open(sealed, keyId) {
      const raw = Buffer.from(sealed, 'base64');
      if (raw.length < 1 + IV_BYTES + TAG_BYTES || raw[0] !== VERSION) return undefined;
      const iv = raw.subarray(1, 1 + IV_BYTES);
      const tag = raw.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
      const body = raw.subarray(1 + IV_BYTES + TAG_BYTES);
      for (const key of keys) {
        try {
          const decipher = createDecipheriv('aes-256-gcm', key, iv);
          decipher.setAAD(Buffer.from(keyId));
          decipher.setAuthTag(tag);
          return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
        } catch {
          // Not this secret (or tampered): try the next one.
        }
      }
      return undefined;
    },
  };
}
