/**
 * A serial queue: tasks run one at a time, in the order they were queued, each after the
 * previous one settled (a failure does not stop the queue). The mutex for async steps that must
 * not interleave: membership changes, workload plans, supervisor reconciles, UAPI sets.
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: the order. Must not touch: what the tasks do, or their errors (each caller gets its own).
 */

export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` after every task queued before it has settled; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => {});
    return result;
  }
}
