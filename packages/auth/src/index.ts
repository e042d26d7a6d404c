export { auth, scope, verifyBearer } from './auth.js';
export { MemoryKeyStore, fingerprint, hashKey, type KeyRecord, type KeyStore } from './keys.js';
export { authOptionsSchema, keyEntrySchema, keyBudgetSchema, type AuthOptions, type KeyEntry, type KeyBudget } from './options.js';
export { FileKeyStore, type KeyFileOptions } from './key-file.js';
