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
];
