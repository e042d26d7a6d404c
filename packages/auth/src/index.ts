export { auth, scope, verifyBearer } from './auth.js';
export { MemoryKeyStore, fingerprint, hashKey, type KeyEntry, type KeyRecord, type KeyStore } from './keys.js';
