// Public surface of src/image.
export * from './types.js';
export * from './platform.js';
export * from './parse.js';
export { OciLayout, readOciLayout, loadLayoutImage, writeOciLayout, bufferStream, type LayoutDocument } from './oci-layout.js';
export { writeDockerArchive, type DockerArchiveOptions } from './docker-archive.js';
export { readDockerArchive, type ArchiveImage } from './docker-archive-read.js';
export { chainId, fileLayer, layerMediaType, formatOfManifest, type Layer } from './layer.js';
export { assembleImage, imageBlobOpener, type AssembleInput, type Image } from './mutate.js';
