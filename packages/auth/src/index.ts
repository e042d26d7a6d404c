export { auth, scope, verifyBearer } from './auth.js';
export { MemoryKeyStore, fingerprint, hashKey, type KeyEntry, type KeyBudget, type KeyRecord, type KeyStore } from './keys.js';
