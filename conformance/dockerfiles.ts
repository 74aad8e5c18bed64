// Conformance: which kaniko Dockerfiles can run offline, and their FROM lines pointed at the local base images.

/** Local base images the run pushes to its registry (repository under conformance/). */
export type LocalBase = 'busybox' | 'debian';

/** Build arguments and flags kaniko's own integration test passes (integration/images.go: argsMap, envsMap, flags). */
export const BUILD_ARGS: Record<string, string[]> = {
  Dockerfile_test_run: ['file=/file'],
  Dockerfile_test_run_new: ['file=/file'],
  Dockerfile_test_run_redo: ['file=/file'], // not in the map of the pinned test, but its RUN writes to $file
  Dockerfile_test_workdir: ['workdir=/arg/workdir'],
  Dockerfile_test_add: ['file=context/foo'],
  Dockerfile_test_arg_secret: ['SSH_PRIVATE_KEY', 'SSH_PUBLIC_KEY=Pµbl1cK€Y'],
  Dockerfile_test_onbuild: ['file=/tmp/onbuild'],
  Dockerfile_test_scratch: ['image=scratch', 'hello=hello-value', 'file=context/foo', 'file3=context/b*'],
  Dockerfile_test_multistage: ['file=/foo2'],
};
export const BUILD_ENV: Record<string, Record<string, string>> = {
  Dockerfile_test_arg_secret: { SSH_PRIVATE_KEY: 'ThEPriv4t3Key' },
};
/** The build context, when kaniko's test uses another than the suite's root, and files its test writes first. */
export const CONTEXT_DIR: Record<string, string> = { Dockerfile_relative_copy: 'context' };
export const CONTEXT_FILES: Record<string, Record<string, string>> = {
  // integration/integration_test.go writes these before building with the Dockerfile's own .dockerignore.
  // Reconstructed: kaniko's integration/.dockerignore excludes ignore/bar and keeps ignore/foo (pkg/util dockerignore tests).
  Dockerfile_test_dockerignore: { 'ignore/foo': 'foo\n', 'ignore/bar': 'bar\n', 'ignore/baz': 'baz\n', '.dockerignore': 'ignore/**\n!ignore/foo\n' },
  Dockerfile_dockerignore_relative: { 'ignore_relative/foo': 'foo\n', 'ignore_relative/bar': 'bar\n', 'ignore_relative/baz': 'baz\n' },
};
export const TARGET: Record<string, string> = { Dockerfile_test_target: 'second' };

/** Dockerfiles the run does not build, and why (checked before the generic rules). */
const SKIP: Record<string, string> = {
  Dockerfile_test_add_404: 'expected to fail: ADD of a URL that answers 404 (and needs the internet)',
  Dockerfile_git_buildcontext: 'needs a git build context fetched from GitHub',
  Dockerfile_registry_mirror: 'tests kaniko\'s --registry-mirror against a public registry',
  Dockerfile_test_copy_bucket: 'needs a GCS bucket build context',
  Dockerfile_test_registry: 'pulls from gcr.io by design',
};

/** A docker.io image name (library/ and docker.io/ stripped) -> the local base that stands in for it. */
const MAP: Record<string, LocalBase> = { busybox: 'busybox', alpine: 'busybox', debian: 'debian', ubuntu: 'debian' };

/** Commands in RUN that reach the internet (package managers, downloads). */
const NET_WORDS = /(?:^|[\s;&|(`])(apt-get|apt|apk|yum|dnf|microdnf|curl|wget|pip3?|gem|npm|git|gcloud|gsutil|go get)\s/;

export function mapImage(ref: string): { base: LocalBase; from: string } | undefined {
  const m = /^(?:docker\.io\/)?(?:library\/)?([a-z0-9._-]+)(?::[^@\s]*)?(?:@sha256:[0-9a-f]{64})?$/.exec(ref);
  const base = m ? MAP[m[1]!] : undefined;
  return base ? { base, from: ref } : undefined;
}

export interface Prepared {
  /** The Dockerfile with REGISTRY as placeholder @REG@. */
  text: string;
  bases: Array<{ base: LocalBase; from: string }>;
}

/** Skip reason, or the rewritten Dockerfile. */
export function prepare(name: string, text: string): { skip: string } | Prepared {
  if (SKIP[name]) return { skip: SKIP[name]! };
  const logical = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  for (const l of logical) {
    const t = l.trim();
    if (/^ADD\s/i.test(t) && /https?:\/\//.test(t)) return { skip: `ADD of a remote URL needs the internet (${t.slice(0, 80)})` };
    if (/^RUN\s/i.test(t)) {
      const w = NET_WORDS.exec(` ${t.slice(4)}`);
      if (w) return { skip: `RUN needs the internet (${w[1]}: ${t.slice(0, 90)})` };
    }
  }
  const stages = new Set<string>();
  const bases: Prepared['bases'] = [];
  let unknown: string | undefined;
  const out = text.split(/\r?\n/).map((line) => {
    const from = /^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$/i.exec(line);
    if (from) {
      const [, pre, flags, img, rest] = from as unknown as [string, string, string, string, string];
      const as = /\s+AS\s+(\S+)/i.exec(rest);
      let repl = img;
      if (img.toLowerCase() !== 'scratch' && !stages.has(img.toLowerCase()) && !img.includes('$')) {
        const m = mapImage(img);
        if (!m) unknown ??= img;
        else { bases.push(m); repl = `@REG@/conformance/${m.base}:latest`; }
      }
      if (as) stages.add(as[1]!.toLowerCase());
      return `${pre}${flags}${repl}${rest}`;
    }
    // ARG defaults that name a base image (FROM $IMAGE_NAME).
    const arg = name === 'Dockerfile_test_meta_arg' ? null : /^(\s*ARG\s+\w+=)(["']?)([^"'\s]+)\2\s*$/i.exec(line);
    if (arg) {
      const m = mapImage(arg[3]!.replace(/\$\{?\w+\}?/g, 'x'));
      if (m && /[:/@]|^(busybox|alpine|debian|ubuntu)$/.test(arg[3]!) && /[a-z]/.test(arg[3]!)) {
        bases.push(m);
        return `${arg[1]}${arg[2]}@REG@/conformance/${m.base}:latest${arg[2]}`;
      }
    }
    return line;
  });
  let result = out.join('\n');
  if (name === 'Dockerfile_test_meta_arg') {
    // FROM ${REGISTRY}/${IMAGE}:${TAG}: the three ARGs together name the image.
    result = result.replace('ARG REGISTRY=docker.io', 'ARG REGISTRY=@REG@').replace('ARG IMAGE=debian', 'ARG IMAGE=conformance/debian')
      .replace('ARG TAG=9.11', 'ARG TAG=latest');
    bases.push({ base: 'debian', from: 'docker.io/debian:9.11' });
  }
  if (name === 'Dockerfile_test_arg_multi_empty_val') {
    result = result.replace('FROM busybox${VARIANT}:1.3${VERSION}', 'FROM @REG@/conformance/busybox${VARIANT}:1.3${VERSION}');
    bases.push({ base: 'busybox', from: 'busybox:1.31' });
  }
  if (unknown) return { skip: `base image ${unknown} has no local stand-in (no internet)` };
  return { text: result, bases };
}
