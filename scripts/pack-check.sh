#!/usr/bin/env bash
# The packages as a user installs them: every package packed with `pnpm pack`, the tarballs
# installed with npm into throw-away apps outside the workspace (one Express, one Koa), each
# app compiled with strict `tsc` and answering one request from the openai SDK. The Koa app
# must not contain Express. Needs a built workspace (`pnpm build`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tarballs"
for dir in packages/*/; do
  (cd "$dir" && pnpm pack --pack-destination "$work/tarballs" >/dev/null)
done
tarballs=$(ls "$work"/tarballs/*.tgz)
echo "pack-check: packed $(echo "$tarballs" | wc -l) packages"

app() {
  local name=$1
  shift
  mkdir -p "$work/$name/src"
  cat >"$work/$name/package.json" <<JSON
{ "name": "pack-check-$name", "private": true, "type": "module" }
JSON
  cat >"$work/$name/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2023", "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true,
    "noUncheckedIndexedAccess": true, "skipLibCheck": true, "outDir": "dist", "rootDir": "src", "types": ["node"]
  },
  "include": ["src"]
}
JSON
  # All tarballs at once, so each @tera-gw dependency resolves to its tarball, never to the registry.
  (cd "$work/$name" && npm install --no-audit --no-fund --loglevel=error $tarballs "$@" >/dev/null)
}

app express express@5 openai@7 typescript@6.0.3 @types/node@24 @types/express@5
cp "$root/scripts/pack-check/express-app.ts" "$work/express/src/main.ts"
(cd "$work/express" && npx tsc -p . && node dist/main.js)

app koa koa@3 koa-mount@4 openai@7 typescript@6.0.3 @types/node@24 @types/koa@3 @types/koa-mount@4
cp "$root/scripts/pack-check/koa-app.ts" "$work/koa/src/main.ts"
(cd "$work/koa" && npx tsc -p . && node dist/main.js)
if [ -e "$work/koa/node_modules/express" ]; then
  echo "pack-check: the Koa app installed Express:" >&2
  (cd "$work/koa" && npm ls express >&2) || true
  exit 1
fi
echo "pack-check: the Koa app has no Express"
echo "pack-check: 2 passed, 0 failed"
