export { auth, scope } from './auth.js';
export { MemoryKeyStore, fingerprint, hashKey, type KeyEntry, type KeyRecord, type KeyStore } from './keys.js';
