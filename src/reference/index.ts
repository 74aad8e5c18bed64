// Public surface of src/reference.
export * from './reference.js';
