// Fails when a function in packages/*/src has more than 80 lines of its own (the lines of the
// named functions nested in it not counted): long functions get named steps instead.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

const LIMIT = 80;
const root = new URL('..', import.meta.url).pathname;
const files = readdirSync(join(root, 'packages')).flatMap((pkg) => {
  try {
    return readdirSync(join(root, 'packages', pkg, 'src'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => join(root, 'packages', pkg, 'src', f));
  } catch {
    return [];
  }
});

const isFunction = (n) =>
  ts.isFunctionDeclaration(n) ||
  ts.isMethodDeclaration(n) ||
  ts.isArrowFunction(n) ||
  ts.isFunctionExpression(n) ||
  ts.isConstructorDeclaration(n) ||
  ts.isGetAccessor(n) ||
  ts.isSetAccessor(n);
const isNamed = (n) =>
  ts.isFunctionDeclaration(n) ||
  ts.isMethodDeclaration(n) ||
  (n.parent && (ts.isVariableDeclaration(n.parent) || ts.isPropertyAssignment(n.parent) || ts.isPropertyDeclaration(n.parent)));

const long = [];
for (const file of files) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const line = (pos) => source.getLineAndCharacterOfPosition(pos).line;
  const span = (n) => line(n.end) - line(n.getStart(source)) + 1;
  const name = (n) =>
    n.name?.getText(source) ?? (n.parent && 'name' in n.parent ? n.parent.name?.getText(source) : undefined) ?? '(anonymous)';
  const visit = (node) => {
    if (isFunction(node) && node.body) {
      let nested = 0;
      const inner = (n) => {
        if (n !== node && isFunction(n) && n.body && isNamed(n)) nested += span(n);
        else ts.forEachChild(n, inner);
      };
      ts.forEachChild(node, inner);
      const own = span(node) - nested;
      if (own > LIMIT) long.push(`${file.slice(root.length)}:${line(node.getStart(source)) + 1} ${name(node)}: ${own} lines of its own`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
}
if (long.length) {
  console.error(`function-lengths: ${long.length} function(s) over ${LIMIT} lines of their own:\n  ${long.join('\n  ')}`);
  process.exit(1);
}
console.log(`function-lengths: ${files.length} files, no function over ${LIMIT} lines of its own`);
