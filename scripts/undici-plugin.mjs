// An esbuild plugin for bundles that include undici (scripts/bundle.mjs, scripts/executor-image/build.mjs): undici's
// cookie helpers read globalThis.Headers at load, which makes node load its own copy of undici (≈ 35-60 ms CPU per
// build); builder uses none of them, so they check undici's own Headers alone.
import { readFile } from 'node:fs/promises';

export const undiciOwnHeaders = {
  name: 'undici-own-headers',
  setup: (b) => b.onLoad({ filter: /undici[\\/]lib[\\/]web[\\/]cookies[\\/]index\.js$/ }, async (args) => {
    const text = await readFile(args.path, 'utf8');
    if (!text.includes('[Headers, globalThis.Headers]')) console.warn(`${args.path} changed: node may load its own undici at start`);
    return { contents: text.replace('[Headers, globalThis.Headers]', '[Headers]'), loader: 'js' };
  }),
};
