// Bounded concurrency over a (possibly async) sequence: layer downloads, blob uploads, COPY's file placements.

/** Runs fn over items with at most `limit` in flight; a `barrier` item is awaited before the next item is taken. */
export async function runPool<T>(items: AsyncIterable<T> | Iterable<T>, limit: number, fn: (t: T) => Promise<void>, barrier?: (t: T) => boolean): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: unknown;
  for await (const it of items) {
    if (failure) break;
    if (barrier?.(it)) {
      await fn(it);
      continue;
    }
    const p = fn(it).catch((e) => { failure ??= e; }).finally(() => running.delete(p));
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure;
}
