// Public surface of src/image.
export * from './types.js';
