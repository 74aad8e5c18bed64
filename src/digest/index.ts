// Public surface of src/digest.
export * from './digest.js';
