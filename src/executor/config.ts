// Metadata instructions applied to an image config: pure functions from (config, expanded instruction) to config.
import path from 'node:path';
import { BuilderError } from '../errors.js';
import type { ContainerConfig, HealthConfig } from '../image/index.js';
import type { CommandLine, ExpandedInstruction, Instruction } from '../dockerfile/index.js';

/** Per-stage facts config changes depend on, beyond the config itself. */
export interface ConfigState {
  config: ContainerConfig;
  /** CMD was set in this stage: ENTRYPOINT then keeps it (Docker resets an inherited CMD). */
  cmdSet: boolean;
  author?: string;
}

export const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** Shell form -> [...SHELL, script]; exec form as written. */
export function commandArgv(cmd: CommandLine, shell: string[] | undefined): string[] {
  return cmd.shell ? [...(shell && shell.length > 0 ? shell : DEFAULT_SHELL), cmd.cmd.join(' ')] : [...cmd.cmd];
}

/** Sets K=V in a Docker "K=V" env list, replacing an existing K in place. */
export function setEnv(list: readonly string[] | undefined, key: string, value: string): string[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** WORKDIR semantics: relative paths resolve against the current working dir. */
export function resolveWorkdir(current: string | undefined, p: string): string {
  // BuildKit (util/system NormalizeWorkdir on Linux) keeps an absolute path as written ("/tmp/" stays "/tmp/"), and
  // joins and cleans a relative one onto the current directory
  if (p.startsWith('/')) return p;
  return path.posix.resolve('/', current || '/', p);
}

/** EXPOSE words -> "port/proto" keys; ranges expanded, protocol defaulting to tcp. */
export function exposedPorts(words: readonly string[], where: string): string[] {
  const out: string[] = [];
  for (const w of words) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(w);
    if (!m) {
      throw new BuilderError('DOCKERFILE_EXPOSE_INVALID', `${where}: invalid port "${w}"`, {
        hint: 'write EXPOSE 80, EXPOSE 80/udp or EXPOSE 8000-8010/tcp',
      });
    }
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    const proto = (m[3] ?? 'tcp').toLowerCase();
    if (hi < lo || hi > 65535) {
      throw new BuilderError('DOCKERFILE_EXPOSE_INVALID', `${where}: invalid port range "${w}"`, { hint: 'ports go from 1 to 65535, low-high' });
    }
    for (let p = lo; p <= hi; p++) out.push(`${p}/${proto}`);
  }
  return out;
}

function healthConfig(inst: Extract<Instruction, { kind: 'healthcheck' }>): HealthConfig {
  if (inst.test === 'NONE') return { Test: ['NONE'] };
  const h: HealthConfig = { Test: inst.test.shell ? ['CMD-SHELL', inst.test.cmd.join(' ')] : ['CMD', ...inst.test.cmd] };
  if (inst.interval !== undefined) h.Interval = inst.interval;
  if (inst.timeout !== undefined) h.Timeout = inst.timeout;
  if (inst.startPeriod !== undefined) h.StartPeriod = inst.startPeriod;
  if (inst.startInterval !== undefined) h.StartInterval = inst.startInterval;
  if (inst.retries !== undefined) h.Retries = inst.retries;
  return h;
}

/**
 * Applies a metadata instruction (already expanded) to the stage's config state; returns a new state.
 * RUN/COPY/ADD/FROM/ARG change no config and return the state unchanged.
 */
export function applyMetadata(state: ConfigState, inst: Instruction | ExpandedInstruction): ConfigState {
  const c: ContainerConfig = { ...state.config };
  const where = `${inst.file}:${inst.line}`;
  switch (inst.kind) {
    case 'env': {
      let env = c.Env ?? [];
      for (const p of inst.pairs) env = setEnv(env, p.key, p.value);
      c.Env = env;
      return { ...state, config: c };
    }
    case 'label': {
      const labels = { ...(c.Labels ?? {}) };
      for (const p of inst.pairs) labels[p.key] = p.value;
      c.Labels = labels;
      return { ...state, config: c };
    }
    case 'maintainer':
      return { ...state, config: c, author: inst.maintainer };
    case 'expose': {
      const ports: Record<string, object> = { ...(c.ExposedPorts ?? {}) };
      for (const p of exposedPorts(inst.ports, where)) ports[p] = {};
      c.ExposedPorts = ports;
      return { ...state, config: c };
    }
    case 'volume': {
      const vols: Record<string, object> = { ...(c.Volumes ?? {}) };
      for (const v of inst.paths) {
        if (v.trim() === '') throw new BuilderError('DOCKERFILE_VOLUME_INVALID', `${where}: VOLUME with an empty path`, { hint: 'give an absolute path, e.g. VOLUME /data' });
        vols[v] = {};
      }
      c.Volumes = vols;
      return { ...state, config: c };
    }
    case 'user':
      c.User = inst.user;
      return { ...state, config: c };
    case 'workdir':
      c.WorkingDir = resolveWorkdir(c.WorkingDir, inst.path);
      return { ...state, config: c };
    case 'entrypoint':
      c.Entrypoint = commandArgv(inst, c.Shell);
      if (!state.cmdSet) c.Cmd = null;
      return { ...state, config: c };
    case 'cmd':
      c.Cmd = commandArgv(inst, c.Shell);
      return { ...state, config: c, cmdSet: true };
    case 'shell':
      c.Shell = [...inst.shell];
      return { ...state, config: c };
    case 'stopsignal':
      c.StopSignal = inst.signal;
      return { ...state, config: c };
    case 'healthcheck':
      c.Healthcheck = healthConfig(inst);
      return { ...state, config: c };
    case 'onbuild':
      c.OnBuild = [...(c.OnBuild ?? []), inst.trigger];
      return { ...state, config: c };
    case 'from':
    case 'run':
    case 'copy':
    case 'add':
    case 'arg':
      return state;
    default: {
      const never: never = inst;
      throw new Error(`unhandled instruction ${JSON.stringify(never)}`);
    }
  }
}

/** The history "created_by" text for a step, in the style docker history shows. */
export function createdBy(inst: Instruction | ExpandedInstruction, shell: string[] | undefined): string {
  switch (inst.kind) {
    case 'run':
      return `RUN ${commandArgv(inst, shell).join(' ')}`;
    default:
      return inst.original.replace(/\s+/g, ' ').trim();
  }
}
