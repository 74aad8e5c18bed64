// Public surface of src/image.
export * from './types.js';
export * from './platform.js';
export * from './parse.js';
export { OciLayout, readOciLayout, loadLayoutImage, writeOciLayout, bufferStream, type LayoutDocument } from './oci-layout.js';
export { writeDockerArchive, type DockerArchiveOptions } from './docker-archive.js';
