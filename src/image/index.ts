// Public surface of src/image.
export * from './types.js';
export * from './platform.js';
export * from './parse.js';
export { OciLayout, readOciLayout, loadLayoutImage, writeOciLayout, writeOciLayoutIndex, writeImageBlobs, bufferStream, type LayoutDocument } from './oci-layout.js';
export { writeDockerArchive, writeMultiPlatformArchive, type DockerArchiveOptions } from './docker-archive.js';
export { readDockerArchive, type ArchiveImage } from './docker-archive-read.js';
export { chainId, fileLayer, layerMediaType, formatOfManifest, type Layer } from './layer.js';
export { assembleImage, assembleIndex, imageBlobOpener, type AssembleInput, type Image, type ImageIndex } from './mutate.js';
