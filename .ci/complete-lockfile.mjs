// Restores the lockfile entries npm drops for other platforms' optional binaries.
//
// The registry mirror on these machines serves only the linux-x64 builds of packages such as
// @biomejs/cli-* and @rollup/rollup-*. npm 11 then leaves the other platforms out of
// package-lock.json, and `npm ci` refuses the very lockfile `npm install` wrote ("Missing: … from
// lock file", npm/cli#9846). An entry per missing optional dependency, marked optional, is what a
// lockfile written against the public registry holds; npm ci then skips them on this platform.
// Run after every `npm install` that changes package-lock.json: node .ci/complete-lockfile.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const [path, meta] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const nested = `${path ? `${path}/` : ''}node_modules/${name}`;
    if (packages[nested] || packages[`node_modules/${name}`]) continue;
    packages[`node_modules/${name}`] = { version, dev: meta.dev === true, optional: true };
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: added ${added} optional platform entries`);
