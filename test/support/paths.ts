// Where the shared conformance corpus lives: ../shared beside the checkout (as in CI), or $BUILDER_SHARED.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = process.env.BUILDER_SHARED ?? path.resolve(REPO_ROOT, '../shared');
export const CONFORMANCE = path.join(SHARED, 'conformance');
