export { harmony, harmonyTransform } from './transform.js';
export { HarmonyContentMachine, TokenStripper, type Piece, type RepairKind } from './machine.js';
export { CONTROL_TOKENS, cleanToolName, stripTokens } from './tokens.js';
