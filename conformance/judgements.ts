// Conformance: every known difference between builder and a reference, judged: deliberate (with the evidence) or a bug.

export interface Judgement {
  id: string;
  dockerfile: RegExp;
  ref: 'buildah' | 'kaniko' | 'both';
  kind?: 'only-builder' | 'only-ref' | 'differs' | 'config';
  what: RegExp;
  attrs?: string[];
  verdict: 'deliberate' | 'bug';
  reason: string;
}

export const JUDGEMENTS: Judgement[] = [
  {
    id: 'buildah-run-mount-stubs', dockerfile: /.*/, ref: 'buildah', kind: 'only-ref', what: /^\/(etc\/(hostname|hosts|resolv\.conf)|run|dev|proc|sys)$/, verdict: 'deliberate',
    reason: 'buildah leaves the empty mount points of its RUN bind mounts in the layer (containers/buildah#4242); BuildKit removes such ' +
      'stubs (moby/buildkit#1739) and builder never creates them in the root it snapshots',
  },
  {
    id: 'buildah-version-label', dockerfile: /.*/, ref: 'buildah', kind: 'config', what: /^config\.Labels\.io\.buildah\.version$/, verdict: 'deliberate',
    reason: 'buildah stamps its version as a label; builder (like BuildKit) adds no label of its own',
  },
  {
    id: 'scratch-workdir', dockerfile: /.*/, ref: 'both', kind: 'config', what: /^config\.WorkingDir$/, verdict: 'deliberate',
    reason: 'an image FROM scratch: BuildKit\'s dockerfile2llb emptyImage() sets Config.WorkingDir = "/" (and PATH), as builder ' +
      'does; buildah and kaniko leave WorkingDir unset',
  },
  {
    id: 'kaniko-root-entry', dockerfile: /.*/, ref: 'kaniko', kind: 'only-ref', what: /^\/$/, verdict: 'deliberate',
    reason: 'kaniko writes an entry for "/" itself into its layers (COPY . . even gives "/" the context directory\'s mode); ' +
      'BuildKit\'s differ (containerd fs.Changes / archive.WriteDiff) reports only paths below the root, as builder',
  },
  {
    id: 'kaniko-copy-dest-mode', dockerfile: /^(Dockerfile_test_copy|Dockerfile_test_copy_reproducible|Dockerfile_test_copy_root_multistage|Dockerfile_test_mv_add|Dockerfile_test_scratch)$/, ref: 'kaniko', kind: 'differs', what: /^\/(test|tmp\/context|foo|baz|bar|empty|dir|newdir|qux)$/, attrs: ['mode'], verdict: 'deliberate',
    reason: 'COPY a b/ /dest/ where a source is a directory: kaniko gives the destination the source directory\'s mode ' +
      '(the suite\'s context is read-only, 0555; test_mv_add moves such an ADD destination); BuildKit creates it with MkdirAll(dest, 0755) (fsutil copy.go Copy and ' +
      'prepareTargetDir) and copies only the contents (moby/buildkit#1941), as builder does',
  },
  {
    id: 'kaniko-copy-symlink-source', dockerfile: /^Dockerfile_test_copy_symlink$/, ref: 'kaniko', kind: 'differs', what: /^\/workdirAnother\/relative_link$/, verdict: 'deliberate',
    reason: 'COPY --from of a path that is itself a symlink: BuildKit follows it (dockerfile2llb dispatchCopy passes ' +
      'FollowSymlinks: true; only links below a copied directory stay links), so the file\'s content is copied, as builder ' +
      'and buildah do; kaniko copies the link',
  },
  {
    id: 'chmod-top-dir', dockerfile: /^Dockerfile_test_copyadd_chmod$/, ref: 'buildah', kind: 'differs', what: /^\/(dir777|copydir755)$/, attrs: ['mode'], verdict: 'deliberate',
    reason: 'ADD/COPY --chmod of a directory: BuildKit since fsutil#228 (the fix of moby/buildkit#4945, BuildKit v0.21) gives the ' +
      'destination directory it creates the --chmod mode too, as builder and kaniko do; buildah 1.28 leaves it 0755',
  },
  {
    id: 'arg-inherited-by-child-stage', dockerfile: /^Dockerfile_test_multistage_args_issue_1911$/, ref: 'buildah', kind: 'differs', what: /^\/[BCD]\.txt$/, attrs: ['sha256', 'size'], verdict: 'deliberate',
    reason: 'an ARG declared in a stage is inherited by stages built FROM it: "Once a build argument is declared or consumed in ' +
      'a stage, it\'s automatically inherited by child stages" (docs.docker.com/build/building/variables/#scoping; the reference ' +
      'was corrected in moby/buildkit#5381). builder and kaniko do so; buildah 1.28 does not (containers/buildah#5762, fixed ' +
      'later by openshift/imagebuilder#304)',
  },
  {
    id: 'run-date', dockerfile: /^Dockerfile_test_cache(_oci)?$/, ref: 'both', kind: 'differs', what: /^\/date$/, attrs: ['sha256'], verdict: 'deliberate',
    reason: '`RUN date > /date` writes the time of the build: it differs between any two builds (kaniko\'s test uses it to check ' +
      'its layer cache, not the content)',
  },
  {
    id: 'buildah-oci-onbuild', dockerfile: /.*/, ref: 'buildah', kind: 'config', what: /^config\.OnBuild$/, verdict: 'deliberate',
    reason: 'buildah writes OCI images by default and the OCI image config has no OnBuild field, so buildah drops the triggers ' +
      '(its docs: ONBUILD is kept only with --format docker); BuildKit and builder keep ONBUILD in the config',
  },
  {
    id: 'json-form-with-trailing-text', dockerfile: /^Dockerfile_test_cmd$/, ref: 'buildah', kind: 'config', what: /^config\.Entrypoint$/, verdict: 'deliberate',
    reason: '`ENTRYPOINT ["myentrypoint"] # comment`: "#" starts a comment only at the beginning of a line, so the argument is ' +
      'not a JSON array and BuildKit takes the shell form (frontend/dockerfile/parser parseMaybeJSON: JSON only when the ' +
      'whole rest parses), giving ["/bin/sh","-c","[\\"myentrypoint\\"] # ..."], as builder and kaniko do; buildah 1.28 drops the text',
  },
  {
    id: 'buildah-env-order', dockerfile: /^Dockerfile_test_env$/, ref: 'buildah', kind: 'config', what: /^config\.Env$/, verdict: 'deliberate',
    reason: 'order only: re-setting a variable the base image has (PATH) moves it to the end in buildah; BuildKit replaces the ' +
      'value in place (dockerfile2llb addEnv), as builder and kaniko do (also in docs/parity.md)',
  },
  {
    id: 'buildah-expose-vars', dockerfile: /^Dockerfile_test_expose$/, ref: 'buildah', kind: 'config', what: /^config\.ExposedPorts\./, verdict: 'deliberate',
    reason: '`EXPOSE $port/$protocol`: EXPOSE supports variable replacement (Dockerfile reference, "Environment replacement"), so ' +
      'with port=83 and protocol=tcp BuildKit exposes 83/tcp, as builder and kaniko do; buildah 1.28 loses that port',
  },
  {
    id: 'run-bare-uid-gid', dockerfile: /^Dockerfile_test_user_nonexisting$/, ref: 'kaniko', kind: 'differs', what: /^\/tmp\/foobar$/, attrs: ['gid'], verdict: 'deliberate',
    reason: 'RUN under `USER 1001` with no passwd entry: BuildKit resolves the user with runc\'s user.GetExecUser and zero ' +
      'defaults (executor/oci/user.go GetUser), so the process runs as 1001:0 and its files are group 0, as with builder and ' +
      'buildah; kaniko uses 1001:1001. (WORKDIR and COPY --chown, file operations, do use uid:uid in BuildKit.)',
  },
  {
    id: 'volume-dirs', dockerfile: /^Dockerfile_test_volume$/, ref: 'both', kind: 'only-ref', what: /^\/(baz|baz\/bat|foo\/bar|qux|qux\/quux)$/, verdict: 'deliberate',
    reason: 'VOLUME is image config only in BuildKit (dockerfile2llb dispatchVolume sets Config.Volumes and nothing else; "BuildKit ' +
      'does not mount volumes during build", moby/moby#39106), so it creates no directory, as builder; kaniko and buildah create ' +
      'the volume directories like the legacy builder',
  },
  {
    id: 'volume-writes-kept', dockerfile: /^Dockerfile_test_volume$/, ref: 'both', kind: 'only-builder', what: /^\/tmp\/hey$/, verdict: 'deliberate',
    reason: 'a RUN writing into a declared VOLUME (/tmp): the Dockerfile reference says the changes are discarded by the legacy ' +
      'builder and kept by BuildKit ("Notes about specifying volumes"); builder keeps them, kaniko and buildah discard them',
  },
  {
    id: 'kaniko-user-group', dockerfile: /^Dockerfile_test_user_run$/, ref: 'kaniko', kind: 'differs', what: /^\/tmp\/foo$/, attrs: ['gid'], verdict: 'deliberate',
    reason: '`USER testuser:testgroup`: the process runs with the named group (testgroup, 1001; BuildKit executor/oci/user.go ' +
      'GetUser -> runc user.GetExecUser), as with builder and buildah; kaniko 1.24 uses the user\'s primary group. kaniko\'s own ' +
      'test skips this Dockerfile (integration/images.go DockerfilesToIgnore)',
  },
];

/** Dockerfiles builder refuses or fails on purpose, with the reason (checked when builder fails and a reference does not). */
export const FAILURES: Array<{ dockerfile: RegExp; id: string; reason: string }> = [
  {
    dockerfile: /^Dockerfile_test_volume_2$/, id: 'volume-no-dir',
    reason: '`VOLUME /foo1` then `RUN echo hello > /foo1/hello`: BuildKit\'s VOLUME creates no directory (config only; ' +
      'moby/moby#39106, wurmlab/sequenceserver#503 "BuildKit doesn\'t create directories associated with VOLUMEs"), so the RUN ' +
      'fails with "Directory nonexistent" under BuildKit as under builder; kaniko and buildah create it like the legacy builder',
  },
];
