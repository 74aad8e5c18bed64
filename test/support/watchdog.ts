// Test support: a watchdog thread for fuzz loops. A hung synchronous call cannot be timed out from its own thread;
// this one prints the input being processed and kills the test process, so a hang fails the run visibly.
import { Worker } from 'node:worker_threads';

/**
 * A watchdog thread that outlives a hung main thread: the fuzzer publishes each input before running it; if one
 * runs longer than hangMs the watchdog prints it and kills this process.
 */
export class Watchdog {
  private readonly state = new Int32Array(new SharedArrayBuffer(12));
  private readonly bytes: Uint8Array;
  private readonly worker: Worker;

  /** `maxInput`: characters of the current input kept for the report. */
  constructor(hangMs: number, maxInput = 8192) {
    this.bytes = new Uint8Array(new SharedArrayBuffer(4 * maxInput + 64));
    this.worker = new Worker(
      `const { workerData: { state, bytes, hangMs } } = require('node:worker_threads');
       let seen = -1, since = Date.now();
       for (;;) {
         Atomics.wait(state, 2, 0, 200);
         if (Atomics.load(state, 2) === 2) break;
         const seq = Atomics.load(state, 0), busy = Atomics.load(state, 1);
         if (seq !== seen || !busy) { seen = seq; since = Date.now(); continue; }
         if (Date.now() - since > hangMs) {
           const input = Buffer.from(bytes.slice(0, bytes.indexOf(0) < 0 ? bytes.length : bytes.indexOf(0))).toString('utf8');
           // Synchronous: the main thread, which relays a worker's process.stderr, is the one that hangs.
           require('node:fs').writeSync(2, 'watchdog: input hung for ' + hangMs + ' ms, killing the test process: ' + JSON.stringify(input) + '\\n');
           process.kill(process.pid, 'SIGKILL');
         }
       }`,
      { eval: true, workerData: { state: this.state, bytes: this.bytes, hangMs } },
    );
    this.worker.unref();
  }

  run<T>(input: string, fn: () => T): T {
    const b = Buffer.from(input.replace(/\0/g, '\\0'), 'utf8').subarray(0, this.bytes.length - 1);
    this.bytes.fill(0);
    this.bytes.set(b);
    Atomics.add(this.state, 0, 1);
    Atomics.store(this.state, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.state, 1, 0);
    }
  }

  async stop(): Promise<void> {
    Atomics.store(this.state, 2, 2);
    Atomics.notify(this.state, 2);
    await this.worker.terminate();
  }
}
