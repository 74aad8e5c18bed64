// Public surface of src/registry: the Distribution v2 client, credentials, and image copy.
export { RegistryClient, type ManifestResult, type ResolvedImage, type PushBlobResult, type PushBlobOptions } from './client.js';
export type { RegistryClientOptions, RegistryPings, TransferProgress } from './transport.js';
export { transferEvent } from './transport.js';
export {
  resolveCredential, credentialProvider, credentialFromConfig, saveLogin, removeLogin, credentialFromGitLabEnv, readDockerConfig, configKeyToRegistry, dockerConfigDir,
  type Credential, type CredentialProvider, type CredentialSources, type HelperRunner, type DockerConfig,
} from './credentials.js';
export { parseChallenge, type Challenge } from './challenge.js';
export { ExtraCa } from './trust.js';
export {
  registryError, RegistryError, retryKind, REGISTRY_ERROR_CODES, type RegistryErrorCode, type RetryKind,
} from './errors.js';
export { RetryPolicy, DEFAULT_RETRIES, type RetrySettings } from './retry.js';
export { copyImage, parseLocation, formatLocation, type ImageLocation, type CopyOptions, type CopyResult } from './copy.js';
export { writeImage, writeIndex, type WriteImageOptions, type WriteImageResult } from './write.js';
export {
  parseRegistryMap, checkPushAccess, tagImage, describeTags, planCleanup, cleanupRepository, deleteImage, createIndex,
  type TagInfo, type CleanupPolicy, type CleanupPlan, type CleanupResult,
} from './ops.js';
export { isImmutableTagError, mirrorRef, MAX_CONFIG, MAX_MANIFEST } from './client.js';
