export { harmony, harmonyTransform } from './transform.js';
export { CONTROL_TOKENS, stripTokens } from './tokens.js';
